package containerdimage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// The protobuf wire format, as much of it as containerd's messages here
// need: varints, length-delimited fields (strings, bytes, messages, map
// entries) and the skipping of anything else.

const (
	wireVarint = 0
	wire64     = 1
	wireBytes  = 2
	wire32     = 5
)

// msg builds one protobuf message. Zero values are left out, as proto3
// encoders do.
type msg []byte

func (m *msg) tag(field, typ int) { *m = binary.AppendUvarint(*m, uint64(field)<<3|uint64(typ)) }

func (m *msg) varint(field int, v uint64) {
	if v == 0 {
		return
	}
	m.tag(field, wireVarint)
	*m = binary.AppendUvarint(*m, v)
}

func (m *msg) boolean(field int, v bool) {
	if v {
		m.varint(field, 1)
	}
}

func (m *msg) bytes(field int, b []byte) {
	if len(b) == 0 {
		return
	}
	m.raw(field, b)
}

// raw writes a length-delimited field even when b is empty: a nested
// message that is present.
func (m *msg) raw(field int, b []byte) {
	m.tag(field, wireBytes)
	*m = binary.AppendUvarint(*m, uint64(len(b)))
	*m = append(*m, b...)
}

func (m *msg) str(field int, s string) { m.bytes(field, []byte(s)) }

// strMap writes a map<string, string> field, keys sorted.
func (m *msg) strMap(field int, kv map[string]string) {
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		var e msg
		e.str(1, k)
		e.str(2, kv[k])
		m.raw(field, e)
	}
}

// fieldMask writes a google.protobuf.FieldMask.
func (m *msg) fieldMask(field int, paths []string) {
	var fm msg
	for _, p := range paths {
		fm.raw(1, []byte(p))
	}
	m.raw(field, fm)
}

var errWire = errors.New("malformed protobuf message")

// fields calls fn for every field of b: its number, and its value as a
// varint (v) or length-delimited bytes (data). Fixed-size fields are
// skipped.
func fields(b []byte, fn func(num int, v uint64, data []byte) error) error {
	for len(b) > 0 {
		key, n := binary.Uvarint(b)
		if n <= 0 {
			return errWire
		}
		b = b[n:]
		num, typ := int(key>>3), int(key&7)
		switch typ {
		case wireVarint:
			v, n := binary.Uvarint(b)
			if n <= 0 {
				return errWire
			}
			b = b[n:]
			if err := fn(num, v, nil); err != nil {
				return err
			}
		case wireBytes:
			l, n := binary.Uvarint(b)
			if n <= 0 || l > uint64(len(b)-n) {
				return errWire
			}
			data := b[n : n+int(l)]
			b = b[n+int(l):]
			if err := fn(num, 0, data); err != nil {
				return err
			}
		case wire64:
			if len(b) < 8 {
				return errWire
			}
			b = b[8:]
		case wire32:
			if len(b) < 4 {
				return errWire
			}
			b = b[4:]
		default:
			return fmt.Errorf("%w: wire type %d", errWire, typ)
		}
	}
	return nil
}

// mapEntry decodes one map<string, string> entry into kv.
func mapEntry(data []byte, kv map[string]string) error {
	var k, v string
	err := fields(data, func(num int, _ uint64, d []byte) error {
		switch num {
		case 1:
			k = string(d)
		case 2:
			v = string(d)
		}
		return nil
	})
	kv[k] = v
	return err
}
