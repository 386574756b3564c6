package enrollctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/edge-enroll/enroll/pkg/cmdline"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// batchCmd pre-provisions devices: one wrapped credential per device, for
// an orchestrator to inject at the client's preprovisioned_path.
func batchCmd(env Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "batch [DEVICE_ID...]",
		Short: "Pre-provision wrapped credentials for an orchestrator",
		Long: `Pre-provision devices: one response-wrapped credential per device, for an
orchestrator to inject at the client's preprovisioned_path before the wrap
TTL (printed) runs out. IDs come from the arguments, -from FILE (one a line,
# comments) or -from - (standard input); they are checked before anything is
sent, duplicates dropped. Requests go in chunks under the server's limit,
with a progress line on stderr; -out writes JSON lines to a new 0600 file
(synced after each chunk), -out-dir one DEVICE_ID.json each. Devices that got
no credential are listed with the reason, and the exit status is 1.`,
		Example: "  enrollctl batch -fleet acme -from ids.txt -out creds.jsonl\n" +
			"  enrollctl batch -fleet acme -out-dir creds/ sensor-30 sensor-31\n" +
			"  generate-ids | enrollctl batch -fleet acme -from - -out creds.jsonl",
	}
	fs := cmd.Flags()
	fleet := fs.String("fleet", "", "fleet (required)")
	from := fs.String("from", "", "read device IDs from this file, one a line (# comments), or - for standard input")
	out := fs.String("out", "", "write the credentials here as JSON lines, a new file made 0600, or - for standard output")
	dir := fs.String("out-dir", "", "or write one <device>.json per device here, each 0600")
	chunk := fs.Int("chunk-size", wire.MaxBatchDevices, "devices per request to the server")
	sf := addServerFlags(fs)
	required(cmd, "fleet")
	return withRun(env, cmd, func(ctx context.Context, env Env, args []string) error {
		if (*out == "") == (*dir == "") {
			return cmdline.Usagef("give one of -out FILE, -out - or -out-dir DIR")
		}
		if *chunk < 1 || *chunk > wire.MaxBatchDevices {
			return cmdline.Usagef("-chunk-size: want 1 to %d", wire.MaxBatchDevices)
		}
		return batch(ctx, env, sf, *fleet, *from, *out, *dir, *chunk, args)
	})
}

func batch(ctx context.Context, env Env, sf *serverFlags, fleet, from, out, dir string, chunk int, args []string) error {
	ids, notes, err := batchIDs(idSource{args: args, from: from, in: env.Stdin})
	if err != nil {
		return err
	}
	for _, n := range notes {
		fmt.Fprintln(env.Stderr, "note:", n)
	}
	c, err := sf.client(env)
	if err != nil {
		return err
	}
	sink, err := openBatchSink(out, dir, env.Stdout)
	if err != nil {
		return err
	}
	res, runErr := runBatch(ctx, batchRun{
		fleet: fleet, ids: ids, chunk: chunk, sink: sink, progress: env.Stderr,
		send: func(ctx context.Context, tok string, ids []string, b *wire.Batch) error {
			return c.do(ctx, tok, http.MethodPost, wire.AdminFleetPath(fleet, "batch"), nil, wire.DeviceIDs{DeviceIDs: ids}, b)
		},
		token: (&childTokens{env: env}).get,
	})
	if err := sink.Close(); err != nil && runErr == nil {
		runErr = fmt.Errorf("%s: %w", sink.Name(), err)
	}
	res.report(env.Stderr, sink.Name())
	if runErr != nil {
		return runErr
	}
	if len(res.failed) > 0 {
		return fmt.Errorf("%d of %d devices got no credential (listed above)", len(res.failed), len(ids))
	}
	return nil
}

// childTokens hands out the short-lived child token a batch sends,
// making a new one before the last expires: a large batch outlives one.
type childTokens struct {
	env  Env
	tok  string
	made time.Time
}

func (c *childTokens) get(ctx context.Context) (string, error) {
	if c.tok == "" || time.Since(c.made) > adminTokenTTL-time.Minute {
		tok, err := adminToken(ctx, c.env)
		if err != nil {
			return "", err
		}
		c.tok, c.made = tok, time.Now()
	}
	return c.tok, nil
}

// batchRun is one batch: its devices, sent in chunks.
type batchRun struct {
	fleet    string
	ids      []string
	chunk    int
	sink     batchSink
	progress io.Writer
	send     func(ctx context.Context, token string, ids []string, into *wire.Batch) error
	token    func(context.Context) (string, error)
}

// batchResult is what a batch did.
type batchResult struct {
	written  int
	failed   []wire.BatchFailure
	wrapTTL  time.Duration
	firstExp time.Time // when the first credential written expires
	took     time.Duration
}

// runBatch sends the devices in chunks under the server's limits and
// writes each chunk's credentials before sending the next. A device the
// server refused is listed and the batch goes on; a chunk the server did
// not answer, or answered with a failure that would fail the rest too,
// stops it, and the devices not provisioned are listed with the reason.
func runBatch(ctx context.Context, b batchRun) (batchResult, error) {
	var res batchResult
	start := time.Now()
	defer func() { res.took = time.Since(start) }()
	chunks := chunkIDs(b.ids, b.chunk)
	sent := 0
	for i, ids := range chunks {
		got, err := sendChunk(ctx, b, ids)
		if err != nil {
			res.failed = append(res.failed, failAll(ids, err)...)
			for _, rest := range chunks[i+1:] {
				res.failed = append(res.failed, failAll(rest, errors.New("not attempted: the batch stopped at an earlier chunk"))...)
			}
			return res, nil
		}
		if err := b.sink.Write(got.Items); err != nil {
			// The credentials of this chunk are minted but not kept.
			for _, it := range got.Items {
				res.failed = append(res.failed, wire.BatchFailure{DeviceID: it.DeviceID, Code: "not_written", Message: "minted, but not written: " + err.Error()})
			}
			return res, fmt.Errorf("%s: %w", b.sink.Name(), err)
		}
		res.written += len(got.Items)
		if res.firstExp.IsZero() && len(got.Items) > 0 {
			res.firstExp = got.Items[0].WrapExpiresAt
		}
		res.wrapTTL = time.Duration(got.WrapTTLSeconds) * time.Second
		res.failed = append(res.failed, got.Failed...)
		sent += len(ids)
		fmt.Fprintf(b.progress, "batch %s: %d/%d devices sent, %d credentials written, %d failed\n", b.fleet, sent, len(b.ids), res.written, len(res.failed))
		if stopped(got.Failed) {
			for _, rest := range chunks[i+1:] {
				res.failed = append(res.failed, failAll(rest, errors.New("not attempted: the server stopped the batch (see above)"))...)
			}
			return res, nil
		}
	}
	return res, nil
}

// sendChunk sends one chunk; a refusal the server marks retryable (it
// did nothing: rate limited, Vault unavailable) is tried again after the
// wait it asks for, a few times.
func sendChunk(ctx context.Context, b batchRun, ids []string) (wire.Batch, error) {
	for attempt := 1; ; attempt++ {
		tok, err := b.token(ctx)
		if err != nil {
			return wire.Batch{}, err
		}
		var got wire.Batch
		err = b.send(ctx, tok, ids, &got)
		var we *wire.Error
		if err == nil || !errors.As(err, &we) || !we.Code.Retryable() || attempt == 3 {
			if err != nil && !errors.As(err, &we) {
				// No answer: the server may have minted this chunk.
				err = fmt.Errorf("the answer was lost (%w); the server may have minted these, which then expire unused: check enrollctl devices before sending them again", err)
			}
			return got, err
		}
		wait := time.Duration(max(we.RetryAfterSeconds, 1)) * time.Second
		select {
		case <-ctx.Done():
			return wire.Batch{}, ctx.Err()
		case <-time.After(wait):
		}
	}
}

// chunkIDs splits ids into requests of at most n devices whose bodies stay
// under the server's limit.
func chunkIDs(ids []string, n int) [][]string {
	const overhead = len(`{"device_ids":[]}`)
	var out [][]string
	var cur []string
	size := overhead
	for _, id := range ids {
		add := len(id) + 3 // quotes and a comma
		if len(cur) == n || size+add > wire.MaxBodyBytes {
			out = append(out, cur)
			cur, size = nil, overhead
		}
		cur = append(cur, id)
		size += add
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// stopped reports whether the server stopped a chunk early.
func stopped(failed []wire.BatchFailure) bool {
	for _, f := range failed {
		if f.Code.Retryable() {
			return true
		}
	}
	return false
}

func failAll(ids []string, err error) []wire.BatchFailure {
	code, msg := wire.Code("failed"), err.Error()
	var we *wire.Error
	if errors.As(err, &we) {
		code, msg = we.Code, we.Message
	}
	out := make([]wire.BatchFailure, 0, len(ids))
	for _, id := range ids {
		out = append(out, wire.BatchFailure{DeviceID: id, Code: code, Message: msg})
	}
	return out
}

// report tells what the batch did: every failed device with its reason,
// then the count, where, and how long the credentials wait.
func (r batchResult) report(w io.Writer, where string) {
	for _, f := range r.failed {
		fmt.Fprintf(w, "failed: %s: %s: %s\n", f.DeviceID, f.Code, f.Message)
	}
	fmt.Fprintf(w, "wrote %d pre-provisioned credentials to %s in %v", r.written, where, roundTook(r.took))
	if r.written > 0 && r.wrapTTL > 0 {
		fmt.Fprintf(w, "; wrap TTL %v: inject each before it expires (the first at %s)", r.wrapTTL, r.firstExp.UTC().Format(time.RFC3339))
		if r.took > r.wrapTTL {
			fmt.Fprintf(w, "\nwarning: the batch took longer than the wrap TTL, so the first credentials have expired already: inject as they are written, send smaller batches, or raise the fleet's wrap_ttl")
		}
	}
	fmt.Fprintln(w)
}

// encodeItem is one credential as written: a JSON object.
func encodeItem(it wire.BatchItem) []byte {
	raw, _ := json.Marshal(it)
	return raw
}

// roundTook rounds a duration for people: whole seconds past ten, tenths
// below, milliseconds under one ("in 0s" for a batch that did work reads
// as if nothing happened).
func roundTook(d time.Duration) time.Duration {
	switch {
	case d >= 10*time.Second:
		return d.Round(time.Second)
	case d >= time.Second:
		return d.Round(100 * time.Millisecond)
	default:
		return d.Round(time.Millisecond)
	}
}
