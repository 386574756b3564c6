package attest

import (
	"fmt"
	"strings"
)

// Secure Boot requirements of a boot policy.
const (
	SecureBootRequired = "required"
	SecureBootAny      = "any"
)

// BootPolicy is a fleet's measured-boot policy: what a replayed event log
// must show. Digests are lower-case hex SHA-256.
type BootPolicy struct {
	SecureBoot string
	// PCR4Allowed lists the boot applications (boot loaders, shims,
	// kernels) that may be measured into PCR 4; empty allows any.
	PCR4Allowed map[string]bool
}

// PolicyError refuses a boot the policy does not allow: its message is
// safe to send.
type PolicyError struct{ msg string }

func (e *PolicyError) Error() string { return e.msg }

// Judge checks a replayed boot against the policy.
func (p BootPolicy) Judge(b Boot) error {
	if p.SecureBoot == SecureBootRequired && b.SecureBoot != SecureBootEnabled {
		why := ""
		if b.SecureBootWhy != "" {
			why = " (" + b.SecureBootWhy + ")"
		}
		return &PolicyError{msg: fmt.Sprintf("the fleet requires Secure Boot, the event log shows it %s%s", b.SecureBoot, why)}
	}
	if len(p.PCR4Allowed) == 0 {
		return nil
	}
	if len(b.PCR4) == 0 {
		return &PolicyError{msg: "the event log shows no boot application in PCR 4, the fleet's policy lists the allowed ones"}
	}
	var denied []string
	for _, d := range b.PCR4 {
		if !p.PCR4Allowed[strings.ToLower(d)] {
			denied = append(denied, d)
		}
	}
	if len(denied) > 0 {
		return &PolicyError{msg: fmt.Sprintf("boot applications the fleet's policy does not allow were measured into PCR 4: %s", strings.Join(denied, ", "))}
	}
	return nil
}
