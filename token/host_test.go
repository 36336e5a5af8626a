package token

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestHostToken(t *testing.T) {
	tok, hash, err := NewHostToken()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(raw) != 32 {
		t.Fatalf("token %q is not 32 base64url bytes: %v", tok, err)
	}
	if hash != HashHostToken(tok) || len(hash) != 64 {
		t.Fatalf("hash %q is not the hex SHA-256 of the token", hash)
	}
	tok2, hash2, err := NewHostToken()
	if err != nil || tok2 == tok || hash2 == hash {
		t.Fatalf("two host tokens are equal: %q %q (%v)", tok, tok2, err)
	}

	tests := []struct {
		name        string
		token, hash string
		want        bool
	}{
		{"match", tok, hash, true},
		{"other token", tok2, hash, false},
		{"token with extra byte", tok + "A", hash, false},
		{"upper-case hash", tok, strings.ToUpper(hash), true},
		{"truncated hash", tok, hash[:62], false},
		{"hash not hex", tok, "zz" + hash[2:], false},
		{"empty hash", tok, "", false},
		{"empty token", "", HashHostToken(""), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CheckHostToken(tt.token, tt.hash); got != tt.want {
				t.Fatalf("CheckHostToken = %v, want %v", got, tt.want)
			}
		})
	}
}
