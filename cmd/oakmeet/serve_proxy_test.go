package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestServeClientIPHeader(t *testing.T) {
	dir := t.TempDir()
	st, _, _, err := parseServe([]string{"--data", dir, "--trusted-proxies", "10.0.0.0/8", "--client-ip-header", "x-forwarded-for"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if st.locate.ClientIPHeader != "X-Forwarded-For" || len(st.locate.TrustedProxies) != 1 {
		t.Fatalf("locate config %+v", st.locate)
	}

	cfg := filepath.Join(dir, "oakmeet.conf")
	if err := os.WriteFile(cfg, []byte("trusted-proxies = 192.0.2.0/24\nclient-ip-header = X-Real-IP\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if st, _, _, err = parseServe([]string{"--data", dir, "--config", cfg}, io.Discard); err != nil || st.locate.ClientIPHeader != "X-Real-Ip" {
		t.Fatalf("from config file: %+v, %v", st.locate, err)
	}

	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--client-ip-header", "X-Forwarded-For"}, "needs --trusted-proxies"},
		{[]string{"--trusted-proxies", "10.0.0.0/8", "--client-ip-header", "X Forwarded"}, "not a header name"},
		{[]string{"--trusted-proxies", "10.0.0.0/8", "--client-ip-header", "X-F:or"}, "not a header name"},
	} {
		_, _, _, err := parseServe(append([]string{"--data", dir}, tt.args...), io.Discard)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: err %v, want %q", tt.args, err, tt.want)
		}
	}
}
