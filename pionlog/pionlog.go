// Package pionlog routes pion's logging (WebRTC, ICE, DTLS, TURN) into log/slog.
// pion reports routine teardown (writes on closed transports) as errors,
// so its errors become warnings and its warnings debug lines; its info,
// debug and trace output is dropped.
package pionlog

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// Factory makes pion loggers that write to Log; it is a
// logging.LoggerFactory.
type Factory struct{ Log *slog.Logger }

func (f Factory) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{log: f.Log.With("pion", scope)}
}

type pionLogger struct{ log *slog.Logger }

func (l pionLogger) at(level slog.Level, msg string) {
	l.log.Log(context.Background(), level, msg)
}

func (l pionLogger) Trace(string)          {}
func (l pionLogger) Tracef(string, ...any) {}
func (l pionLogger) Debug(string)          {}
func (l pionLogger) Debugf(string, ...any) {}
func (l pionLogger) Info(string)           {}
func (l pionLogger) Infof(string, ...any)  {}
func (l pionLogger) Warn(msg string)       { l.at(slog.LevelDebug, msg) }
func (l pionLogger) Warnf(format string, args ...any) {
	l.at(slog.LevelDebug, fmt.Sprintf(format, args...))
}
func (l pionLogger) Error(msg string) { l.at(slog.LevelWarn, msg) }
func (l pionLogger) Errorf(format string, args ...any) {
	l.at(slog.LevelWarn, fmt.Sprintf(format, args...))
}
