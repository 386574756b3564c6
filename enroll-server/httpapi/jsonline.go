package httpapi

import (
	"encoding/json"
	"net/http"
)

// jsonLine renders one value as a line of JSON.
type jsonLine struct{ v any }

func (j jsonLine) Render(w http.ResponseWriter) error {
	raw, err := json.Marshal(j.v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(raw, '\n'))
	return err
}

func (jsonLine) WriteContentType(http.ResponseWriter) {}
