package privatedir

import (
	"fmt"
	"os"

	"golang.org/x/sys/windows"
)

// sddl: protected (P) DACL, full access (FA) for SYSTEM (SY) and
// Administrators (BA), inherited by files and subdirectories (OICI).
const sddl = "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)"

func restrict(dir string, _ os.FileMode) error {
	sd, err := windows.SecurityDescriptorFromString(sddl)
	if err != nil {
		return fmt.Errorf("security descriptor: %w", err)
	}
	dacl, _, err := sd.DACL()
	if err != nil {
		return fmt.Errorf("DACL: %w", err)
	}
	err = windows.SetNamedSecurityInfo(dir, windows.SE_FILE_OBJECT,
		windows.DACL_SECURITY_INFORMATION|windows.PROTECTED_DACL_SECURITY_INFORMATION, nil, nil, dacl, nil)
	if err != nil {
		return fmt.Errorf("set DACL on %s: %w", dir, err)
	}
	return nil
}
