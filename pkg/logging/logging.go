// Package logging builds the structured loggers of both binaries.
package logging

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// New returns a logger writing to w. level is debug, info, warn or error;
// format is text or json.
func New(w io.Writer, level, format string) (*slog.Logger, error) {
	lv, err := ParseLevel(level)
	if err != nil {
		return nil, err
	}
	return NewLeveled(w, lv, format)
}

// NewLeveled returns a logger writing to w at the level lv reports, so that
// a *slog.LevelVar changes it while the program runs.
func NewLeveled(w io.Writer, lv slog.Leveler, format string) (*slog.Logger, error) {
	if err := ValidFormat(format); err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: lv, ReplaceAttr: ReadableDurations}
	if strings.EqualFold(format, "json") {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}

// ParseLevel reads a level name: debug, info, warn or error.
func ParseLevel(level string) (slog.Level, error) {
	var lv slog.Level
	if level == "" {
		return lv, errors.New("log level is empty: want debug, info, warn or error")
	}
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return lv, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	return lv, nil
}

// ValidFormat checks a format name: text (or empty) or json.
func ValidFormat(format string) error {
	switch strings.ToLower(format) {
	case "json", "text", "":
		return nil
	}
	return fmt.Errorf("log format %q: want text or json", format)
}

// ReadableDurations (a slog ReplaceAttr) writes durations as people read them ("1m30s"), not
// as nanoseconds, in JSON as in text.
func ReadableDurations(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}
