package api

import "testing"

// FuzzParseLink checks that ParseLink never panics on any string (links
// are pasted by people and arrive from anywhere) and that a link it accepts
// is written by String back to a link that parses to the same fields.
func FuzzParseLink(f *testing.F) {
	for _, s := range []string{
		"https://meet.example.com/m/abc123#s=secret&h=fp&host=tok",
		"http://127.0.0.1:8080/m/x%2Fy#s=a%20b",
		" https://[::1]:443/m/id/#s=s ",
		"https://h/m/#s=x",
		"ftp://h/m/id#s=x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		l, err := ParseLink(raw)
		if err != nil {
			return
		}
		if l.Secret == "" || l.Meeting == "" {
			t.Fatalf("ParseLink(%q) accepted %+v", raw, l)
		}
		again, err := ParseLink(l.String())
		if err != nil {
			t.Fatalf("ParseLink(%q) = %+v, whose String %q does not parse: %v", raw, l, l.String(), err)
		}
		if again != l {
			t.Fatalf("ParseLink(%q) = %+v, but its String %q parses to %+v", raw, l, l.String(), again)
		}
	})
}
