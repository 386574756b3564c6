package enrollctl

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/pkg/wire"
)

func TestBatchIDs(t *testing.T) {
	dir := t.TempDir()
	file := func(body string) string {
		p := filepath.Join(dir, fmt.Sprintf("ids-%d", len(body)))
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name      string
		src       idSource
		want      []string
		note, err string
	}{
		{"arguments", idSource{args: []string{"a-1", "a-2"}}, []string{"a-1", "a-2"}, "", ""},
		{"a file with comments and blank lines", idSource{from: file("# cameras\ncam-1\n\n  cam-2  \n")}, []string{"cam-1", "cam-2"}, "", ""},
		{"standard input after the arguments", idSource{args: []string{"x"}, from: "-", in: strings.NewReader("y\nz\n")}, []string{"x", "y", "z"}, "", ""},
		{"duplicates dropped with a note", idSource{args: []string{"a"}, from: "-", in: strings.NewReader("b\na\nb\n")}, []string{"a", "b"}, "dropped 2 duplicate device IDs (the first: a at standard input:2)", ""},
		{"an invalid ID is named with its line", idSource{from: file("ok-1\nCam_2\nok-3\n")}, nil, "", `ids-16:2: device ID "Cam_2"`},
		{"a line too long", idSource{from: "-", in: strings.NewReader("a\n" + strings.Repeat("x", maxIDLineBytes+1))}, nil, "", "standard input:2: a line longer than"},
		{"nothing", idSource{from: "-", in: strings.NewReader("# none\n")}, nil, "", "no device IDs"},
		{"a missing file", idSource{from: filepath.Join(dir, "nope")}, nil, "", "-from: open"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ids, notes, err := batchIDs(tt.src)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want one with %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(ids, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("ids = %v, want %v", ids, tt.want)
			}
			if got := strings.Join(notes, "; "); got != tt.note {
				t.Fatalf("notes = %q, want %q", got, tt.note)
			}
		})
	}
}

// Every chunk fits the server's limits, whatever the IDs' length.
func TestChunksStayUnderTheServerLimits(t *testing.T) {
	for _, pad := range []string{"", strings.Repeat("d", 58)} {
		ids := make([]string, 10_000)
		for i := range ids {
			ids[i] = fmt.Sprintf("%s%06d", pad, i) // 6 or 64 characters
		}
		var joined []string
		for _, c := range chunkIDs(ids, wire.MaxBatchDevices) {
			raw, _ := json.Marshal(wire.DeviceIDs{DeviceIDs: c})
			if len(c) > wire.MaxBatchDevices || len(raw) > wire.MaxBodyBytes {
				t.Fatalf("a chunk of %d IDs, %d bytes", len(c), len(raw))
			}
			joined = append(joined, c...)
		}
		if strings.Join(joined, ",") != strings.Join(ids, ",") {
			t.Fatal("the chunks do not add up to the IDs in order")
		}
	}
}

// A batch that fails half way keeps every credential the server minted
// before, written and synced, and lists every device without one: refused
// by the server, in the chunk whose answer was lost, or never sent. The
// failures are injected by the send function; the real server's side is
// in test/e2e.
func TestBatchKeepsWhatWasMintedWhenAChunkFails(t *testing.T) {
	ids := []string{"d-1", "d-2", "d-3", "d-4", "d-5", "d-6", "d-7"}
	calls := 0
	send := func(_ context.Context, tok string, ids []string, into *wire.Batch) error {
		calls++
		if tok != "child" {
			t.Errorf("sent token %q", tok)
		}
		switch calls {
		case 1, 2:
			for _, id := range ids {
				if id == "d-4" {
					into.Failed = append(into.Failed, wire.BatchFailure{DeviceID: id, Code: wire.CodeRejected, Message: "device was revoked"})
					continue
				}
				into.Items = append(into.Items, wire.BatchItem{DeviceID: id, EnrollResponse: wire.EnrollResponse{
					WrappingToken: "hvs.wrap-" + id, WrapExpiresAt: time.Now().Add(time.Minute)}})
			}
			into.WrapTTLSeconds = 120
			return nil
		default:
			return errors.New("connection reset")
		}
	}
	out := filepath.Join(t.TempDir(), "creds", "batch.jsonl")
	sink, err := openBatchSink(out, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var progress strings.Builder
	res, err := runBatch(context.Background(), batchRun{fleet: "acme", ids: ids, chunk: 2, sink: sink, progress: &progress,
		send: send, token: func(context.Context) (string, error) { return "child", nil }})
	if err != nil {
		t.Fatal(err)
	}
	sink.Close()
	st, err := os.Stat(out)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("output file: %v %v", st, err)
	}
	f, _ := os.Open(out)
	defer f.Close()
	var written []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var it wire.BatchItem
		if err := json.Unmarshal(sc.Bytes(), &it); err != nil {
			t.Fatal(err)
		}
		written = append(written, it.DeviceID)
	}
	if strings.Join(written, ",") != "d-1,d-2,d-3" || res.written != 3 {
		t.Fatalf("written %v (%d), want d-1,d-2,d-3", written, res.written)
	}
	reasons := map[string]string{}
	for _, f := range res.failed {
		reasons[f.DeviceID] = string(f.Code) + ": " + f.Message
	}
	want := map[string]string{"d-4": "device was revoked", "d-5": "answer was lost", "d-6": "answer was lost", "d-7": "not attempted"}
	if len(reasons) != len(want) {
		t.Fatalf("failed = %v", reasons)
	}
	for id, w := range want {
		if !strings.Contains(reasons[id], w) {
			t.Errorf("%s failed with %q, want %q", id, reasons[id], w)
		}
	}
	if !strings.Contains(progress.String(), "4/7 devices sent, 3 credentials written, 1 failed") {
		t.Errorf("progress = %q", progress.String())
	}
	var report strings.Builder
	res.report(&report, out)
	if !strings.Contains(report.String(), "failed: d-7: ") || !strings.Contains(report.String(), "wrap TTL 2m0s") || strings.Contains(report.String(), "hvs.") {
		t.Errorf("report = %q", report.String())
	}
	// Never over an earlier batch's file.
	if _, err := openBatchSink(out, "", nil); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("a second batch to the same file: %v", err)
	}
}

func TestRoundTook(t *testing.T) {
	for _, c := range []struct {
		in   time.Duration
		want string
	}{
		{340 * time.Millisecond, "340ms"},
		{1234 * time.Millisecond, "1.2s"},
		{83*time.Second + 400*time.Millisecond, "1m23s"},
		{0, "0s"},
	} {
		if got := roundTook(c.in).String(); got != c.want {
			t.Errorf("roundTook(%v) = %s, want %s", c.in, got, c.want)
		}
	}
}
