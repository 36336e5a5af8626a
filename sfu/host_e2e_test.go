package sfu_test

import (
	"strings"
	"testing"

	"github.com/oakmeet/oakmeet/hoststmt"
	"github.com/oakmeet/oakmeet/sfu"
	"github.com/oakmeet/oakmeet/sfu/sfutest"
	"github.com/oakmeet/oakmeet/signal"
)

func TestHostRefusesStatementsNoClientWouldTake(t *testing.T) {
	t.Parallel()
	srv := sfutest.Start(t, sfu.Config{})
	p := peer(t, srv, "m", "p")
	for name, st := range map[string]string{
		"none":      "",
		"not json":  `{"kind":`,
		"too large": `"` + strings.Repeat("a", hoststmt.MaxBytes) + `"`,
	} {
		if err := srv.SFU.Host("m", []byte(st)); err == nil {
			t.Errorf("%s: statement accepted", name)
		}
	}
	ok := `{"kind":"settings","seq":1,"lobby":true,"sig":"c2ln"}`
	if err := srv.SFU.Host("m", []byte(ok)); err != nil {
		t.Fatal(err)
	}
	got := p.WaitFor("the statement", func(m signal.Message) bool { return m.Type == signal.TypeHost })
	if string(got.Payload) != ok {
		t.Fatalf("first host message %s, want %s", got.Payload, ok)
	}
}
