package api

import "testing"

func TestLinkRoundTrip(t *testing.T) {
	for _, l := range []Link{
		{Server: "https://meet.example", Meeting: "abc123", Secret: "s3cr3t", HostFingerprint: "fpfpfp"},
		{Server: "http://127.0.0.1:8080", Meeting: "a b", Secret: "x+y/z", HostToken: "tok"},
	} {
		got, err := ParseLink(l.String())
		if err != nil || got != l {
			t.Fatalf("ParseLink(%q) = %+v, %v; want %+v", l.String(), got, err, l)
		}
	}
	for _, bad := range []string{"", "ftp://x/m/a#s=1", "https://x/a#s=1", "https://x/m/a", "https://x/m/a#h=fp", "https://x/m/#s=1"} {
		if _, err := ParseLink(bad); err == nil {
			t.Errorf("ParseLink(%q) accepted", bad)
		}
	}
}
