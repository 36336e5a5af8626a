package adversary

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
)

// Log is a slog handler that keeps every record, with its attributes
// flattened to text, so a test can ask what a component said: which relay
// it refused and why, whom it saw connect.
type Log struct {
	sink  *logSink
	attrs []slog.Attr
	group string
}

// Entry is one kept record.
type Entry struct {
	Level   slog.Level
	Message string
	// Attrs are the record's attributes and those of its logger, by key
	// (groups joined with "."), as text.
	Attrs map[string]string
}

func (e Entry) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %q", e.Level, e.Message)
	for k, v := range e.Attrs {
		fmt.Fprintf(&b, " %s=%q", k, v)
	}
	return b.String()
}

type logSink struct {
	mu      sync.Mutex
	entries []Entry
}

// NewLog returns an empty log.
func NewLog() *Log { return &Log{sink: &logSink{}} }

// Logger is a logger writing to l.
func (l *Log) Logger() *slog.Logger { return slog.New(l) }

// Enabled keeps every level: debug lines are where refusals may be told.
func (l *Log) Enabled(context.Context, slog.Level) bool { return true }

// Handle keeps r.
func (l *Log) Handle(_ context.Context, r slog.Record) error {
	e := Entry{Level: r.Level, Message: r.Message, Attrs: map[string]string{}}
	for _, a := range l.attrs {
		flatten(e.Attrs, "", a)
	}
	r.Attrs(func(a slog.Attr) bool {
		flatten(e.Attrs, l.group, a)
		return true
	})
	l.sink.mu.Lock()
	l.sink.entries = append(l.sink.entries, e)
	l.sink.mu.Unlock()
	return nil
}

// WithAttrs is a handler adding attrs to every record.
func (l *Log) WithAttrs(attrs []slog.Attr) slog.Handler {
	n := &Log{sink: l.sink, group: l.group, attrs: append([]slog.Attr(nil), l.attrs...)}
	for _, a := range attrs {
		if l.group != "" {
			a = slog.Attr{Key: l.group + "." + a.Key, Value: a.Value}
		}
		n.attrs = append(n.attrs, a)
	}
	return n
}

// WithGroup is a handler putting later attributes under name.
func (l *Log) WithGroup(name string) slog.Handler {
	g := name
	if l.group != "" {
		g = l.group + "." + name
	}
	return &Log{sink: l.sink, attrs: l.attrs, group: g}
}

func flatten(into map[string]string, prefix string, a slog.Attr) {
	key := a.Key
	if prefix != "" {
		key = prefix + "." + key
	}
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		for _, g := range v.Group() {
			flatten(into, key, g)
		}
		return
	}
	into[key] = v.String()
}

// Entries are the records kept so far.
func (l *Log) Entries() []Entry {
	l.sink.mu.Lock()
	defer l.sink.mu.Unlock()
	return append([]Entry(nil), l.sink.entries...)
}

// Find returns the records for which match holds.
func (l *Log) Find(match func(Entry) bool) []Entry {
	var out []Entry
	for _, e := range l.Entries() {
		if match(e) {
			out = append(out, e)
		}
	}
	return out
}

// Has reports whether some record has the message and every attribute in
// want (key, value, key, value…); a value may be given as a prefix ending
// in "*".
func (l *Log) Has(message string, want ...string) bool {
	return len(l.Find(Match(message, want...))) > 0
}

// Match is a record filter for Find: the message ("" = any) and
// attributes as for Has.
func Match(message string, want ...string) func(Entry) bool {
	return func(e Entry) bool {
		if message != "" && e.Message != message {
			return false
		}
		for i := 0; i+1 < len(want); i += 2 {
			got, ok := e.Attrs[want[i]]
			if !ok {
				return false
			}
			if w, prefix := strings.CutSuffix(want[i+1], "*"); prefix {
				if !strings.HasPrefix(got, w) {
					return false
				}
			} else if got != w {
				return false
			}
		}
		return true
	}
}
