package enrollctl

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/edge-enroll/enroll/enroll-server/vault"
	"github.com/edge-enroll/enroll/pkg/bundle"
	"github.com/edge-enroll/enroll/pkg/cmdline"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// serverFlags say how to reach enroll-server's admin API.
type serverFlags struct{ url, ca string }

func addServerFlags(fs *pflag.FlagSet) *serverFlags {
	s := &serverFlags{}
	fs.StringVar(&s.url, "server-url", "", "enrollment server URL (default: $ENROLL_SERVER_URL)")
	fs.StringVar(&s.ca, "server-ca", "", "PEM CA bundle of the server's certificate (default: $ENROLL_SERVER_CA)")
	return s
}

// rawTo copies a response body to a writer instead of decoding it.
type rawTo struct{ w io.Writer }

// call calls an admin endpoint with a fresh child of the administrator's
// Vault token, sending in as JSON when it is not nil and decoding the
// answer into out.
func (s *serverFlags) call(ctx context.Context, env Env, method, path string, q url.Values, in, out any) error {
	c, err := s.client(env)
	if err != nil {
		return err
	}
	tok, err := adminToken(ctx, env)
	if err != nil {
		return err
	}
	return c.do(ctx, tok, method, path, q, in, out)
}

// adminClient calls the admin API of one server.
type adminClient struct {
	env    Env
	base   string
	caPath string
	http   *http.Client
}

// client checks the server's address and CA and builds its client.
func (s *serverFlags) client(env Env) (*adminClient, error) {
	base := s.url
	if base == "" {
		base = env.Getenv("ENROLL_SERVER_URL")
	}
	if err := bundle.ValidateURL(base); err != nil {
		return nil, fmt.Errorf("server URL (-server-url or $ENROLL_SERVER_URL): %w", err)
	}
	caPath := s.ca
	if caPath == "" {
		caPath = env.Getenv("ENROLL_SERVER_CA")
	}
	caPEM, err := readOptional(caPath)
	if err != nil {
		return nil, fmt.Errorf("server CA (-server-ca or $ENROLL_SERVER_CA): %w", err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caPEM != "" {
		pool, _ := bundle.CertPool(caPEM)
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	}
	return &adminClient{env: env, base: strings.TrimSuffix(base, "/"), caPath: caPath,
		http: &http.Client{Transport: tr, Timeout: 5 * time.Minute,
			// A redirect would carry the token elsewhere.
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return errors.New("the server answered with a redirect; enrollctl does not follow redirects with a token (check -server-url)")
			}}}, nil
}

// do makes one call with tok (see call).
func (c *adminClient) do(ctx context.Context, tok, method, path string, q url.Values, in, out any) error {
	var body io.Reader
	if in != nil {
		raw, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(raw)
	}
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set(wire.HeaderVaultToken, tok)
	resp, err := c.http.Do(req)
	if err != nil {
		return serverHint(err, c.base, c.caPath)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		if r, ok := out.(rawTo); ok {
			_, err := io.Copy(r.w, io.LimitReader(resp.Body, 1<<30))
			return err
		}
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var eb wire.ErrorBody
		if json.Unmarshal(data, &eb) == nil && eb.Error.Code != "" {
			return refusedHint(&eb.Error, c.env)
		}
		return fmt.Errorf("server answered %s", resp.Status)
	}
	return json.Unmarshal(data, out)
}

// adminTokenTTL is how long the token enrollctl sends to the server lives.
const adminTokenTTL = 5 * time.Minute

// adminToken is what enrollctl sends to the server as the administrator's
// proof: a short-lived child of $VAULT_TOKEN holding only its edge-enroll
// admin policies, made at $VAULT_ADDR. The administrator's own, longer
// lived token never reaches the internet-facing server.
func adminToken(ctx context.Context, env Env) (string, error) {
	if env.Getenv("VAULT_TOKEN") == "" {
		return "", errors.New("VAULT_TOKEN is not set: log in to Vault first (vault login)")
	}
	if env.Getenv("VAULT_ADDR") == "" {
		return "", errors.New("VAULT_ADDR is not set: enrollctl makes a short-lived child of your Vault token there, and sends that to the server instead of your own")
	}
	a, err := (&vaultFlags{layout: vault.DefaultLayout()}).admin(env)
	if err != nil {
		return "", err
	}
	tok, err := a.AdminChildToken(ctx, adminTokenTTL)
	return tok, vaultHint(err, env)
}

func devicesCmd(env Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "devices",
		Short: "List devices (filters: -fleet -state -generation -seen-since; pages)",
		Long: `List devices as a table, or as JSON with -json (which also shows each
device's key fingerprint, EK hash, join-state sequence and held request).
A page holds -limit devices; the next page starts -after the cursor printed
at the end ("more: -after CURSOR").`,
		Example: "  enrollctl devices -fleet acme -state pending\n" +
			"  enrollctl devices -fleet acme -seen-since 24h -json\n" +
			"  enrollctl devices -fleet acme -after sensor-100",
		Args: cobra.NoArgs,
	}
	fs := cmd.Flags()
	fleet := fs.String("fleet", "", "only devices of this fleet")
	state := fs.String("state", "", "only devices in this state")
	gen := fs.Int("generation", 0, "only devices enrolled with this bootstrap generation")
	since := fs.String("seen-since", "", "only devices heard from since (RFC 3339 time, or a duration such as 24h)")
	limit := fs.Int("limit", 100, "devices per page")
	after := fs.String("after", "", "page cursor (the previous page's next)")
	asJSON := cmdline.JSONFlag(cmd)
	sf := addServerFlags(fs)
	return withRun(env, cmd, func(ctx context.Context, env Env, _ []string) error {
		var list wire.DeviceList
		q := url.Values{"fleet": {*fleet}, "state": {*state}, "limit": {strconv.Itoa(*limit)}, "after": {*after}, "seen_since": {*since}}
		if *gen > 0 {
			q.Set("generation", strconv.Itoa(*gen))
		}
		if err := sf.call(ctx, env, http.MethodGet, wire.PathAdminDevices, q, nil, &list); err != nil {
			return err
		}
		if *asJSON {
			return cmdline.WriteJSON(env.Stdout, list)
		}
		tw := newTable(env.Stdout)
		fmt.Fprintln(tw, "FLEET\tDEVICE\tSTATE\tADMISSION\tGENERATION\tENROLLMENTS\tENROLLED\tTPM\tBOOT\tSECRET ID ACCESSOR")
		for _, d := range list.Devices {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\n", d.Fleet, d.ID, dash(d.State), dash(d.Admission), d.Generation, d.Enrollments, timeOrDash(d.EnrolledAt), tpmColumn(d), bootColumn(d), d.SecretIDAccessor)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if list.Next != "" {
			fmt.Fprintf(env.Stdout, "more: -after %s\n", list.Next)
		}
		return nil
	})
}

// newTable aligns a table's columns, the header's included.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
}

func timeOrDash(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// tpmColumn is a device's TPM binding in a table: the EK's kind and the
// start of its hash, and who certified it.
func tpmColumn(d wire.Device) string {
	if d.EKHash == "" {
		return "-"
	}
	s := d.EKKind + ":" + d.EKHash[:min(12, len(d.EKHash))]
	if d.EKIssuer != "" {
		s += " (" + d.EKIssuer + ")"
	}
	if d.RebindAllowed {
		s += " rebind allowed"
	}
	return s
}

// bootColumn is a device's last accepted measured boot in a table: the
// result and its Secure Boot state.
func bootColumn(d wire.Device) string {
	if d.Boot == nil {
		return "-"
	}
	return d.Boot.Result + " (secure boot " + d.Boot.SecureBoot + ")"
}
