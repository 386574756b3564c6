package enrollctl

import "flag"

// preauthorizeFlag adds approve's -preauthorize: without it the server
// refuses to approve a device ID it has never heard from (a typo would
// otherwise wait, approved, for a device nobody has). Other device
// actions do not take it.
func preauthorizeFlag(fs *flag.FlagSet, action string) *bool {
	if action != "approve" {
		return new(false)
	}
	return fs.Bool("preauthorize", false, "approve a device ID that has not asked to enroll yet (it may enroll when it first does)")
}
