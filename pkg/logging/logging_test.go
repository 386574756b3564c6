package logging

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// Durations read as durations in both formats, never as nanoseconds.
func TestDurationsAreReadable(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		var b bytes.Buffer
		log, err := New(&b, "info", format)
		if err != nil {
			t.Fatal(err)
		}
		log.Info("retry", "retry_in", 90*time.Second)
		if !strings.Contains(b.String(), "1m30s") || strings.Contains(b.String(), "90000000000") {
			t.Fatalf("%s: %s", format, b.String())
		}
	}
	if _, err := New(&bytes.Buffer{}, "verbose", "json"); err == nil {
		t.Fatal("an unknown level was accepted")
	}
}
