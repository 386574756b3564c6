package wire

import (
	"strings"
	"testing"
)

// Vault folds AppRole role names to lower case, so a device ID in another
// case would reach another device's role: only lower case is accepted, and
// the refusal names the form to use.
func TestDeviceIDsAreLowerCaseOnly(t *testing.T) {
	for _, ok := range []string{"sensor-03", "a", "x.y_z-1", strings.Repeat("a", 64)} {
		if err := ValidateDeviceID(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"SENSOR-03", "Sensor-04", "sensor-0A", "", "-a", "a-", "a/b", strings.Repeat("a", 65)} {
		if err := ValidateDeviceID(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if err := ValidateDeviceID("Sensor-04"); err == nil || !strings.Contains(err.Error(), `"sensor-04"`) {
		t.Errorf("the refusal does not name the lower-case form: %v", err)
	}
}

func FuzzValidateDeviceID(f *testing.F) {
	for _, s := range []string{"sensor-03", "SENSOR-03", "a.b", "ß", "a\x00b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ValidateDeviceID(s) == nil && strings.ToLower(s) != s {
			t.Fatalf("%q accepted but not in canonical form", s)
		}
	})
}
