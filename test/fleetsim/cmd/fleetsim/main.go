// Command fleetsim enrolls a simulated fleet through a running enroll-server:
//
//	fleetsim -bundle bundle.json -devices 1000 [-ramp 30s] [-prefix sim] [-results out.json]
//
// With -results it writes how many retries devices were told to make and,
// per device, where it ended and the accessor of its secret ID (never a
// credential), for checking against the server and Vault.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/edge-enroll/enroll/pkg/bundle"
	"github.com/edge-enroll/enroll/test/fleetsim"
)

func main() {
	path := flag.String("bundle", "", "bootstrap bundle of the fleet (required)")
	n := flag.Int("devices", 100, "how many devices")
	ramp := flag.Duration("ramp", 0, "spread arrivals over this long (0: all at once)")
	prefix := flag.String("prefix", "sim", "device ID prefix")
	timeout := flag.Duration("timeout", 30*time.Minute, "give up after this long")
	concurrency := flag.Int("concurrency", 0, "devices enrolling at once (0: all of them)")
	results := flag.String("results", "", "write each device's phase and secret ID accessor here (JSON)")
	flag.Parse()
	f, err := os.Open(*path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleetsim:", err)
		os.Exit(2)
	}
	b, err := bundle.Parse(f)
	f.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleetsim:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res, err := fleetsim.Run(ctx, fleetsim.Options{Bundle: b, Devices: *n, Ramp: *ramp, Prefix: *prefix, Timeout: *timeout,
		Concurrency: *concurrency, Progress: os.Stderr})
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleetsim:", err)
		os.Exit(1)
	}
	fmt.Println(res)
	if *results != "" {
		if err := writeResults(*results, res); err != nil {
			fmt.Fprintln(os.Stderr, "fleetsim:", err)
			os.Exit(1)
		}
	}
	if res.Enrolled != res.Devices {
		os.Exit(1)
	}
}

// writeResults writes the run's report to path, owner-only.
func writeResults(path string, res fleetsim.Result) error {
	data, err := json.Marshal(res.Report())
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o600)
}
