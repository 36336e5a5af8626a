// Package config fills a command's flags from, in order of precedence, the
// command line, OAKMEET_* environment variables and an optional config file,
// so every setting has one name in all three places.
package config

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// EnvName is the environment variable for a flag: "max-participants" →
// "OAKMEET_MAX_PARTICIPANTS".
func EnvName(flagName string) string {
	return "OAKMEET_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Parse parses args into fs, then sets every flag not given on the command
// line from the environment (lookup, usually os.LookupEnv) and then from the
// config file named by the flag "config" (or OAKMEET_CONFIG), if fs has one.
func Parse(fs *flag.FlagSet, args []string, lookup func(string) (string, bool)) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	var firstErr error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || firstErr != nil {
			return
		}
		v, ok := lookup(EnvName(f.Name))
		if !ok {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			firstErr = fmt.Errorf("environment %s=%q: %w", EnvName(f.Name), v, err)
			return
		}
		set[f.Name] = true
	})
	if firstErr != nil {
		return firstErr
	}

	cf := fs.Lookup("config")
	if cf == nil || cf.Value.String() == "" {
		return nil
	}
	path := cf.Value.String()
	file, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	defer file.Close()
	values, err := ReadFile(file)
	if err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	for _, kv := range values {
		if fs.Lookup(kv.Name) == nil {
			return fmt.Errorf("config file %s:%d: unknown setting %q", path, kv.Line, kv.Name)
		}
		if set[kv.Name] {
			continue
		}
		if err := fs.Set(kv.Name, kv.Value); err != nil {
			return fmt.Errorf("config file %s:%d: %s: %w", path, kv.Line, kv.Name, err)
		}
	}
	return nil
}

// Setting is one line of a config file.
type Setting struct {
	Name, Value string
	Line        int
}

// ReadFile reads "name = value" lines; '#' starts a comment, blank lines are
// ignored, and a value may be wrapped in double quotes.
func ReadFile(r io.Reader) ([]Setting, error) {
	var out []Setting
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("line %d: want name = value, got %q", n, line)
		}
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if name == "" {
			return nil, fmt.Errorf("line %d: missing name", n)
		}
		if len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"' {
			value = value[1 : len(value)-1]
		}
		out = append(out, Setting{Name: name, Value: value, Line: n})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}
