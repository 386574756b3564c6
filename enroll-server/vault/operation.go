package vault

import "strings"

// Operation names a Vault request by what it does, for metrics: the method
// and the path with every name of a fleet, device, role or entity replaced
// by "*". A path it does not recognise is "other", so the set of names a
// metric can carry is bounded whatever the requests.
//
// It is how `make bench` counts the Vault calls of each kind of enrollment
// from the server's own metrics.
func Operation(method, urlPath string) string {
	p, ok := strings.CutPrefix(urlPath, "/v1/")
	if !ok {
		return "other"
	}
	seg := strings.Split(strings.Trim(p, "/"), "/")
	shape := operationShape(seg)
	if shape == "" {
		return "other"
	}
	return method + " " + shape
}

// operationShape is the path of seg with its variable parts starred, or ""
// when it is none of the paths the server uses.
func operationShape(seg []string) string {
	switch {
	case len(seg) >= 2 && seg[0] == "sys":
		switch seg[1] {
		case "wrapping", "capabilities", "health", "auth", "mounts", "policies", "policy":
			if len(seg) > 3 {
				return ""
			}
			return strings.Join(seg[:min(len(seg), 3)], "/")
		}
	case len(seg) == 3 && seg[0] == "auth" && seg[1] == "token":
		return "auth/token/" + seg[2]
	case len(seg) == 3 && seg[0] == "auth" && seg[2] == "login":
		return "auth/*/login"
	case len(seg) >= 4 && seg[0] == "auth" && seg[2] == "role":
		rest := seg[4:]
		if len(rest) > 2 {
			return ""
		}
		return strings.Join(append([]string{"auth/*/role/*"}, rest...), "/")
	case len(seg) >= 2 && seg[0] == "identity":
		switch {
		case len(seg) == 3 && seg[1] == "lookup":
			return "identity/lookup/" + seg[2]
		case len(seg) == 4 && seg[1] == "entity" && seg[2] == "id":
			return "identity/entity/id/*"
		}
	case len(seg) == 6 && seg[1] == "data" && seg[2] == "enroll" && seg[3] == "fleets":
		return "*/data/enroll/fleets/*/" + seg[5]
	}
	return ""
}
