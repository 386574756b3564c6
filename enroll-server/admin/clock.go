package admin

import (
	"strconv"
	"time"
)

var timeNow = func() time.Time { return time.Now().UTC() }

func itoa(n int) string { return strconv.Itoa(n) }
