// Package strictyaml decodes configuration files strictly: a size cap, and
// an unknown key is an error that names it (and its line).
package strictyaml

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"go.yaml.in/yaml/v3"
)

// MaxSize caps a configuration file.
const MaxSize = 1 << 20

// Decode reads one YAML document from r into v, over whatever v already
// holds (its defaults). An empty document leaves v unchanged.
func Decode(r io.Reader, v any) error {
	data, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	if err != nil {
		return err
	}
	if len(data) > MaxSize {
		return fmt.Errorf("larger than %d bytes", MaxSize)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}
