package config

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func newFS() (*flag.FlagSet, *string, *int, *string) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	listen := fs.String("listen", "127.0.0.1:8080", "")
	maxP := fs.Int("max-participants", 100, "")
	cfg := fs.String("config", "", "")
	return fs, listen, maxP, cfg
}

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestPrecedence(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "oakmeet.conf")
	content := "# comment\nlisten = \"0.0.0.0:9\"\n\nmax-participants = 7\n"
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}

	fs, listen, maxP, _ := newFS()
	if err := Parse(fs, []string{"--config", path}, env(nil)); err != nil {
		t.Fatal(err)
	}
	if *listen != "0.0.0.0:9" || *maxP != 7 {
		t.Fatalf("file: %s %d", *listen, *maxP)
	}

	fs, listen, maxP, _ = newFS()
	if err := Parse(fs, []string{"--config", path}, env(map[string]string{"OAKMEET_MAX_PARTICIPANTS": "3"})); err != nil {
		t.Fatal(err)
	}
	if *listen != "0.0.0.0:9" || *maxP != 3 {
		t.Fatalf("env over file: %s %d", *listen, *maxP)
	}

	fs, _, maxP, _ = newFS()
	if err := Parse(fs, []string{"--max-participants", "1"}, env(map[string]string{"OAKMEET_MAX_PARTICIPANTS": "3", "OAKMEET_CONFIG": path})); err != nil {
		t.Fatal(err)
	}
	if *maxP != 1 {
		t.Fatalf("args over env: %d", *maxP)
	}
}

func TestErrorsNameTheSource(t *testing.T) {
	fs, _, _, _ := newFS()
	err := Parse(fs, nil, env(map[string]string{"OAKMEET_MAX_PARTICIPANTS": "many"}))
	if err == nil || !strings.Contains(err.Error(), "OAKMEET_MAX_PARTICIPANTS") {
		t.Fatalf("bad env value: %v", err)
	}

	dir := t.TempDir()
	path := filepath.Join(dir, "c")
	os.WriteFile(path, []byte("listen = x\nbogus = 1\n"), 0o600)
	fs, _, _, _ = newFS()
	err = Parse(fs, []string{"--config", path}, env(nil))
	if err == nil || !strings.Contains(err.Error(), `:2: unknown setting "bogus"`) {
		t.Fatalf("unknown setting: %v", err)
	}

	os.WriteFile(path, []byte("just words\n"), 0o600)
	fs, _, _, _ = newFS()
	if err := Parse(fs, []string{"--config", path}, env(nil)); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("malformed line: %v", err)
	}

	fs, _, _, _ = newFS()
	if err := Parse(fs, []string{"--config", filepath.Join(dir, "missing")}, env(nil)); err == nil {
		t.Fatal("missing file accepted")
	}
}

func FuzzReadFile(f *testing.F) {
	f.Add("a = b\n# c\n d=\"e\"")
	f.Fuzz(func(t *testing.T, s string) {
		settings, err := ReadFile(strings.NewReader(s))
		if err != nil {
			return
		}
		for _, st := range settings {
			if st.Name == "" || st.Name != strings.TrimSpace(st.Name) || strings.Contains(st.Name, "=") {
				t.Fatalf("bad setting %+v", st)
			}
		}
	})
}
