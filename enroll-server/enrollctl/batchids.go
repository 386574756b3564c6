package enrollctl

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/edge-enroll/enroll/pkg/wire"
)

// Limits on a batch's list of device IDs, which may come from a file
// someone else wrote.
const (
	maxBatchIDs    = 1_000_000
	maxIDLineBytes = 4096
	maxIDErrors    = 20 // invalid lines named before the rest are counted
)

// idSource is where a batch's device IDs came from.
type idSource struct {
	args []string  // on the command line
	from string    // -from: a file, or "-" for standard input
	in   io.Reader // standard input
}

// batchIDs reads, validates and deduplicates a batch's device IDs, in the
// order given. Every invalid ID is an error (nothing is sent); duplicates
// are dropped, and notes says so.
func batchIDs(src idSource) (ids, notes []string, err error) {
	c := idCollector{seen: map[string]int{}}
	for i, a := range src.args {
		c.add(a, fmt.Sprintf("argument %d", i+1))
	}
	if src.from != "" {
		r, name, closeFn, err := openIDs(src)
		if err != nil {
			return nil, nil, err
		}
		err = c.read(r, name)
		closeFn()
		if err != nil {
			return nil, nil, err
		}
	}
	if len(c.bad) > 0 {
		if c.badCount > len(c.bad) {
			c.bad = append(c.bad, fmt.Sprintf("and %d more", c.badCount-len(c.bad)))
		}
		return nil, nil, fmt.Errorf("%d invalid device IDs, nothing was sent:\n  %s", c.badCount, strings.Join(c.bad, "\n  "))
	}
	if len(c.ids) == 0 {
		return nil, nil, errors.New("no device IDs: give them as arguments, in a file (-from FILE, one a line) or on standard input (-from -)")
	}
	if c.dups > 0 {
		notes = append(notes, fmt.Sprintf("dropped %d duplicate device IDs (the first: %s)", c.dups, c.firstDup))
	}
	return c.ids, notes, nil
}

func openIDs(src idSource) (io.Reader, string, func(), error) {
	if src.from == "-" {
		if src.in == nil {
			return strings.NewReader(""), "standard input", func() {}, nil
		}
		return src.in, "standard input", func() {}, nil
	}
	f, err := os.Open(src.from)
	if err != nil {
		return nil, "", nil, fmt.Errorf("-from: %w", err)
	}
	return f, src.from, func() { f.Close() }, nil
}

type idCollector struct {
	ids      []string
	seen     map[string]int
	bad      []string
	badCount int
	dups     int
	firstDup string
}

// read takes one device ID a line; blank lines and lines starting with #
// are skipped.
func (c *idCollector) read(r io.Reader, name string) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 256), maxIDLineBytes)
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		if len(c.ids) >= maxBatchIDs {
			return fmt.Errorf("%s: more than %d device IDs; split the batch", name, maxBatchIDs)
		}
		c.add(s, fmt.Sprintf("%s:%d", name, line))
	}
	if errors.Is(sc.Err(), bufio.ErrTooLong) {
		return fmt.Errorf("%s:%d: a line longer than %d bytes: want one device ID a line", name, line+1, maxIDLineBytes)
	}
	if sc.Err() != nil {
		return fmt.Errorf("%s: %w", name, sc.Err())
	}
	return nil
}

func (c *idCollector) add(id, where string) {
	if err := wire.ValidateDeviceID(id); err != nil {
		c.badCount++
		if len(c.bad) < maxIDErrors {
			c.bad = append(c.bad, where+": "+err.Error())
		}
		return
	}
	if _, dup := c.seen[id]; dup {
		if c.dups == 0 {
			c.firstDup = id + " at " + where
		}
		c.dups++
		return
	}
	c.seen[id] = len(c.ids)
	c.ids = append(c.ids, id)
}
