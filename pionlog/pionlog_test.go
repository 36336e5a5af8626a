package pionlog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/pion/logging"
)

func TestLevels(t *testing.T) {
	for _, tc := range []struct {
		name string
		log  func(logging.LeveledLogger)
		want string // the slog line, or "" for none
	}{
		{"error", func(l logging.LeveledLogger) { l.Error("boom") }, "level=WARN msg=boom pion=ice"},
		{"errorf", func(l logging.LeveledLogger) { l.Errorf("boom %d", 7) }, `level=WARN msg="boom 7" pion=ice`},
		{"warn", func(l logging.LeveledLogger) { l.Warn("hm") }, "level=DEBUG msg=hm pion=ice"},
		{"warnf", func(l logging.LeveledLogger) { l.Warnf("hm %s", "x") }, `level=DEBUG msg="hm x" pion=ice`},
		{"info", func(l logging.LeveledLogger) { l.Infof("hi %d", 1) }, ""},
		{"debug", func(l logging.LeveledLogger) { l.Debug("dbg") }, ""},
		{"trace", func(l logging.LeveledLogger) { l.Tracef("tr %d", 1) }, ""},
	} {
		var buf bytes.Buffer
		h := slog.NewTextHandler(&buf, &slog.HandlerOptions{
			Level: slog.LevelDebug,
			ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
				if a.Key == slog.TimeKey {
					return slog.Attr{}
				}
				return a
			},
		})
		tc.log(Factory{Log: slog.New(h)}.NewLogger("ice"))
		if got := strings.TrimSpace(buf.String()); got != tc.want {
			t.Errorf("%s: logged %q, want %q", tc.name, got, tc.want)
		}
	}
}
