package config

// Where things live by default on Windows: one directory under ProgramData,
// readable by the service (LocalSystem) and Administrators only.
const (
	dataDir               = `C:\ProgramData\edge-enroll\client\`
	DefaultPath           = dataDir + `config.yaml`
	defaultBundle         = dataDir + `bundle.json`
	defaultState          = dataDir + `state.db`
	defaultPreprovisioned = dataDir + `preprovisioned.json`
	defaultSink           = dataDir + `token`
	defaultEventLog       = "" // TBS's log is not read yet
	defaultTPM            = "tbs"
)
