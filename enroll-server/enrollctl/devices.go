package enrollctl

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/edge-enroll/enroll/pkg/bundle"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// serverFlags say how to reach enroll-server's admin API.
type serverFlags struct{ url, ca string }

func addServerFlags(fs *flag.FlagSet) *serverFlags {
	s := &serverFlags{}
	fs.StringVar(&s.url, "server-url", "", "enrollment server URL (default: $ENROLL_SERVER_URL)")
	fs.StringVar(&s.ca, "server-ca", "", "PEM CA bundle of the server's certificate (default: $ENROLL_SERVER_CA)")
	return s
}

// get calls an admin endpoint with the administrator's Vault token.
func (s *serverFlags) get(ctx context.Context, env Env, path string, q url.Values, out any) error {
	base := s.url
	if base == "" {
		base = env.Getenv("ENROLL_SERVER_URL")
	}
	if err := bundle.ValidateURL(base); err != nil {
		return fmt.Errorf("server URL: %w", err)
	}
	caPath := s.ca
	if caPath == "" {
		caPath = env.Getenv("ENROLL_SERVER_CA")
	}
	caPEM, err := readOptional(caPath)
	if err != nil {
		return err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caPEM != "" {
		pool, _ := bundle.CertPool(caPEM)
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+path+"?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	req.Header.Set(wire.HeaderVaultToken, env.Getenv("VAULT_TOKEN"))
	resp, err := (&http.Client{Transport: tr, Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var eb wire.ErrorBody
		if json.Unmarshal(data, &eb) == nil && eb.Error.Code != "" {
			return &eb.Error
		}
		return fmt.Errorf("server answered %s", resp.Status)
	}
	return json.Unmarshal(data, out)
}

func devices(ctx context.Context, args []string, env Env) error {
	fs := flag.NewFlagSet("devices", flag.ContinueOnError)
	fleet := fs.String("fleet", "", "only devices of this fleet")
	asJSON := fs.Bool("json", false, "print JSON")
	sf := addServerFlags(fs)
	if err := parse(fs, args, env); err != nil {
		return err
	}
	var list wire.DeviceList
	if err := sf.get(ctx, env, wire.PathAdminDevices, url.Values{"fleet": {*fleet}}, &list); err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(list)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FLEET\tDEVICE\tSTATE\tGENERATION\tENROLLMENTS\tENROLLED\tSECRET ID ACCESSOR")
	for _, d := range list.Devices {
		enrolled := "-"
		if !d.EnrolledAt.IsZero() {
			enrolled = d.EnrolledAt.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\n", d.Fleet, d.ID, d.State, d.Generation, d.Enrollments, enrolled, d.SecretIDAccessor)
	}
	return tw.Flush()
}
