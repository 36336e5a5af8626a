package turncred

import (
	"errors"
	"testing"
	"time"
)

func TestIssueCheck(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	now := time.Unix(1_800_000_000, 0)
	u, p := Issue(secret, "p123", now.Add(time.Hour))
	if u != "1800003600:p123" || p != Password(secret, u) || p == Password([]byte("other"), u) {
		t.Fatalf("issued %q %q", u, p)
	}
	if pid, err := Check(u, now); err != nil || pid != "p123" {
		t.Fatalf("check: %q %v", pid, err)
	}
	if _, err := Check(u, now.Add(2*time.Hour)); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired: %v", err)
	}
	for _, bad := range []string{"", "abc", "123", "x:p", "123:"} {
		if _, err := Check(bad, now); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func FuzzCheck(f *testing.F) {
	f.Add("1800003600:p123")
	f.Fuzz(func(t *testing.T, u string) {
		if pid, err := Check(u, time.Unix(0, 0)); err == nil && pid == "" {
			t.Fatal("accepted without a participant")
		}
	})
}
