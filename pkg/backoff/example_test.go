package backoff_test

import (
	"fmt"
	"time"

	"github.com/edge-enroll/enroll/pkg/backoff"
)

func ExampleBackoff_Next() {
	top := func() float64 { return 0.999 } // show the ceiling of each draw
	b := backoff.New(time.Second, 8*time.Second, top)
	for range 5 {
		fmt.Println(b.Next(0).Round(time.Second))
	}
	// A server's Retry-After is a floor, spread by up to half of it.
	fmt.Println(b.Next(10 * time.Second).Round(time.Second))
	// Output:
	// 1s
	// 2s
	// 4s
	// 8s
	// 8s
	// 15s
}
