package bot

import (
	"encoding/base64"
	"testing"
)

func TestTokenIssued(t *testing.T) {
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	for _, tc := range []struct {
		tok  string
		want int64
	}{
		{"v1." + enc(`{"iat":"2026-01-02T03:04:05.678Z"}`) + ".sig", 1767323045678},
		{"", 0},
		{"v1." + enc(`{"iat":"2026-01-02T03:04:05Z"}`), 0}, // no signature part
		{"v1.!!!.sig", 0},
		{"v1." + enc(`{"iat":17}`) + ".sig", 0},
	} {
		if got := tokenIssued(tc.tok); got != tc.want {
			t.Errorf("tokenIssued(%q) = %d, want %d", tc.tok, got, tc.want)
		}
	}
}

func FuzzTokenIssued(f *testing.F) {
	f.Add("v1.eyJpYXQiOiIyMDI2LTAxLTAyVDAzOjA0OjA1WiJ9.sig")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, tok string) {
		tokenIssued(tok) // any input: a time or 0, never a panic
	})
}
