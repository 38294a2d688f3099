package containerdimage

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// The calls of containerd's API that an import makes, with their messages
// written and read field by field. Field numbers are those of the .proto
// files of github.com/containerd/containerd/api (services/*/v1, types),
// unchanged from containerd 1.6 to 2.x; the real-containerd tests exercise
// every field that is sent.

const (
	svcVersion       = "/containerd.services.version.v1.Version/"
	svcIntrospection = "/containerd.services.introspection.v1.Introspection/"
	svcContent       = "/containerd.services.content.v1.Content/"
	svcImages        = "/containerd.services.images.v1.Images/"
	svcLeases        = "/containerd.services.leases.v1.Leases/"
	svcSnapshots     = "/containerd.services.snapshots.v1.Snapshots/"
	svcDiff          = "/containerd.services.diff.v1.Diff/"
)

// Content write actions (content.v1.WriteAction).
const (
	writeStat   = 0
	writeWrite  = 1
	writeCommit = 2
)

// Snapshot kinds (snapshots.v1.Kind).
const kindCommitted = 3

// encode writes d as a containerd.types.Descriptor.
func (d descriptor) encode() msg {
	var m msg
	m.str(1, d.MediaType)
	m.str(2, d.Digest)
	m.varint(3, uint64(d.Size))
	return m
}

func decodeDescriptor(b []byte) (descriptor, error) {
	var d descriptor
	err := fields(b, func(num int, v uint64, data []byte) error {
		switch num {
		case 1:
			d.MediaType = string(data)
		case 2:
			d.Digest = string(data)
		case 3:
			d.Size = int64(v)
		}
		return nil
	})
	return d, err
}

// only returns the one length-delimited field num of b (an XxxResponse
// wrapping one message), or nil.
func only(b []byte, num int) ([]byte, error) {
	var out []byte
	err := fields(b, func(n int, _ uint64, data []byte) error {
		if n == num {
			out = data
		}
		return nil
	})
	return out, err
}

func (c *Client) apiVersion(ctx context.Context) (string, error) {
	b, err := c.conn.unary(ctx, svcVersion+"Version", nil)
	if err != nil {
		return "", err
	}
	v, err := only(b, 1)
	return string(v), err
}

// plugin is an introspection.v1.Plugin.
type plugin struct {
	Type, ID string
	Exports  map[string]string
	Failed   bool // init_err is set
}

func (c *Client) apiPlugins(ctx context.Context, filters ...string) ([]plugin, error) {
	var req msg
	for _, f := range filters {
		req.raw(1, []byte(f))
	}
	b, err := c.conn.unary(ctx, svcIntrospection+"Plugins", req)
	if err != nil {
		return nil, err
	}
	var out []plugin
	err = fields(b, func(num int, _ uint64, data []byte) error {
		if num != 1 {
			return nil
		}
		p := plugin{Exports: map[string]string{}}
		err := fields(data, func(num int, _ uint64, d []byte) error {
			switch num {
			case 1:
				p.Type = string(d)
			case 2:
				p.ID = string(d)
			case 5:
				return mapEntry(d, p.Exports)
			case 7:
				p.Failed = true
			}
			return nil
		})
		out = append(out, p)
		return err
	})
	return out, err
}

// contentInfo is a content.v1.Info.
type contentInfo struct {
	Digest string
	Size   int64
	Labels map[string]string
}

func decodeContentInfo(b []byte) (contentInfo, error) {
	info := contentInfo{Labels: map[string]string{}}
	err := fields(b, func(num int, v uint64, d []byte) error {
		switch num {
		case 1:
			info.Digest = string(d)
		case 2:
			info.Size = int64(v)
		case 5:
			return mapEntry(d, info.Labels)
		}
		return nil
	})
	return info, err
}

func (c *Client) apiContentInfo(ctx context.Context, digest string) (contentInfo, error) {
	var req msg
	req.str(1, digest)
	b, err := c.conn.unary(ctx, svcContent+"Info", req)
	if err != nil {
		return contentInfo{}, err
	}
	info, err := only(b, 1)
	if err != nil {
		return contentInfo{}, err
	}
	return decodeContentInfo(info)
}

// apiContentUpdate sets the labels named by paths ("labels.KEY") to their
// values in labels; a path without a value removes the label.
func (c *Client) apiContentUpdate(ctx context.Context, digest string, labels map[string]string, paths []string) error {
	var info msg
	info.str(1, digest)
	info.strMap(5, labels)
	var req msg
	req.raw(1, info)
	req.fieldMask(2, paths)
	_, err := c.conn.unary(ctx, svcContent+"Update", req)
	return err
}

func (c *Client) apiContentAbort(ctx context.Context, ref string) error {
	var req msg
	req.str(1, ref)
	_, err := c.conn.unary(ctx, svcContent+"Abort", req)
	return err
}

// contentReader reads a blob as containerd streams it.
type contentReader struct{ s *stream }

func (c *Client) apiContentRead(ctx context.Context, digest string) *contentReader {
	var req msg
	req.str(1, digest)
	return &contentReader{s: c.conn.call(ctx, svcContent+"Read", req)}
}

// next returns the next chunk of data, io.EOF at the end.
func (r *contentReader) next() ([]byte, error) {
	b, err := r.s.recv()
	if err != nil {
		return nil, err
	}
	return only(b, 2)
}

func (r *contentReader) close() { r.s.close() }

// writeRequest is a content.v1.WriteContentRequest.
type writeRequest struct {
	Action   int
	Ref      string
	Total    int64
	Expected string
	Offset   int64
	Data     []byte
	Labels   map[string]string
}

func (w writeRequest) encode() msg {
	var m msg
	m.varint(1, uint64(w.Action))
	m.str(2, w.Ref)
	m.varint(3, uint64(w.Total))
	m.str(4, w.Expected)
	m.varint(5, uint64(w.Offset))
	m.bytes(6, w.Data)
	m.strMap(7, w.Labels)
	return m
}

// writeResponse is a content.v1.WriteContentResponse.
type writeResponse struct {
	Action        int
	Offset, Total int64
	Digest        string
}

func decodeWriteResponse(b []byte) (writeResponse, error) {
	var w writeResponse
	err := fields(b, func(num int, v uint64, d []byte) error {
		switch num {
		case 1:
			w.Action = int(v)
		case 4:
			w.Offset = int64(v)
		case 5:
			w.Total = int64(v)
		case 6:
			w.Digest = string(d)
		}
		return nil
	})
	return w, err
}

// contentWriter is a content Write call: one answer per request.
type contentWriter struct {
	s   *stream
	ctx context.Context
}

func (c *Client) apiContentWrite(ctx context.Context) *contentWriter {
	return &contentWriter{s: c.conn.call(ctx, svcContent+"Write", nil), ctx: ctx}
}

func (w *contentWriter) roundTrip(req writeRequest) (writeResponse, error) {
	if err := w.s.send(req.encode()); err != nil {
		return writeResponse{}, callErr(w.ctx, err)
	}
	b, err := w.s.recv()
	if errors.Is(err, io.EOF) {
		return writeResponse{}, fmt.Errorf("content write: containerd ended the call")
	}
	if err != nil {
		return writeResponse{}, callErr(w.ctx, err)
	}
	return decodeWriteResponse(b)
}

func (w *contentWriter) close() { w.s.close() }

// imageRecord is an images.v1.Image.
type imageRecord struct {
	Name   string
	Labels map[string]string
	Target descriptor
}

func (i imageRecord) encode() msg {
	var m msg
	m.str(1, i.Name)
	m.strMap(2, i.Labels)
	m.raw(3, i.Target.encode())
	return m
}

func (c *Client) apiImageGet(ctx context.Context, name string) (imageRecord, error) {
	var req msg
	req.str(1, name)
	b, err := c.conn.unary(ctx, svcImages+"Get", req)
	if err != nil {
		return imageRecord{}, err
	}
	data, err := only(b, 1)
	if err != nil {
		return imageRecord{}, err
	}
	img := imageRecord{Labels: map[string]string{}}
	err = fields(data, func(num int, _ uint64, d []byte) error {
		switch num {
		case 1:
			img.Name = string(d)
		case 2:
			return mapEntry(d, img.Labels)
		case 3:
			var err error
			img.Target, err = decodeDescriptor(d)
			return err
		}
		return nil
	})
	return img, err
}

func (c *Client) apiImageCreate(ctx context.Context, img imageRecord) error {
	var req msg
	req.raw(1, img.encode())
	_, err := c.conn.unary(ctx, svcImages+"Create", req)
	return err
}

func (c *Client) apiImageUpdate(ctx context.Context, img imageRecord, paths ...string) error {
	var req msg
	req.raw(1, img.encode())
	req.fieldMask(2, paths)
	_, err := c.conn.unary(ctx, svcImages+"Update", req)
	return err
}

// apiImageDelete deletes image name; with sync the garbage collector has
// run when it returns.
func (c *Client) apiImageDelete(ctx context.Context, name string, sync bool) error {
	var req msg
	req.str(1, name)
	req.boolean(2, sync)
	_, err := c.conn.unary(ctx, svcImages+"Delete", req)
	return err
}

func (c *Client) apiLeaseCreate(ctx context.Context, id string, labels map[string]string) error {
	var req msg
	req.str(1, id)
	req.strMap(3, labels)
	_, err := c.conn.unary(ctx, svcLeases+"Create", req)
	return err
}

// apiLeaseDelete deletes lease id; with sync the garbage collector has run
// when it returns.
func (c *Client) apiLeaseDelete(ctx context.Context, id string, sync bool) error {
	var req msg
	req.str(1, id)
	req.boolean(2, sync)
	_, err := c.conn.unary(ctx, svcLeases+"Delete", req)
	return err
}

func (c *Client) apiLeaseAddResource(ctx context.Context, lease, typ, id string) error {
	var res msg
	res.str(1, id)
	res.str(2, typ)
	var req msg
	req.str(1, lease)
	req.raw(2, res)
	_, err := c.conn.unary(ctx, svcLeases+"AddResource", req)
	return err
}

// apiSnapshotPrepare returns the new active snapshot's mounts as encoded
// containerd.types.Mount messages, to hand on to the diff service as they
// are.
func (c *Client) apiSnapshotPrepare(ctx context.Context, key, parent string) ([][]byte, error) {
	var req msg
	req.str(1, c.snapshotter)
	req.str(2, key)
	req.str(3, parent)
	b, err := c.conn.unary(ctx, svcSnapshots+"Prepare", req)
	if err != nil {
		return nil, err
	}
	var mounts [][]byte
	err = fields(b, func(num int, _ uint64, d []byte) error {
		if num == 1 {
			mounts = append(mounts, d)
		}
		return nil
	})
	return mounts, err
}

func (c *Client) apiSnapshotCommit(ctx context.Context, name, key string) error {
	var req msg
	req.str(1, c.snapshotter)
	req.str(2, name)
	req.str(3, key)
	_, err := c.conn.unary(ctx, svcSnapshots+"Commit", req)
	return err
}

func (c *Client) apiSnapshotRemove(ctx context.Context, key string) error {
	var req msg
	req.str(1, c.snapshotter)
	req.str(2, key)
	_, err := c.conn.unary(ctx, svcSnapshots+"Remove", req)
	return err
}

// snapshotInfo is a snapshots.v1.Info.
type snapshotInfo struct {
	Name, Parent string
	Kind         int
}

func (c *Client) apiSnapshotStat(ctx context.Context, key string) (snapshotInfo, error) {
	var req msg
	req.str(1, c.snapshotter)
	req.str(2, key)
	b, err := c.conn.unary(ctx, svcSnapshots+"Stat", req)
	if err != nil {
		return snapshotInfo{}, err
	}
	data, err := only(b, 1)
	if err != nil {
		return snapshotInfo{}, err
	}
	var info snapshotInfo
	err = fields(data, func(num int, v uint64, d []byte) error {
		switch num {
		case 1:
			info.Name = string(d)
		case 2:
			info.Parent = string(d)
		case 3:
			info.Kind = int(v)
		}
		return nil
	})
	return info, err
}

// apiDiffApply applies the layer blob d onto mounts and returns the
// descriptor of what was applied (its digest is the layer's diff ID).
func (c *Client) apiDiffApply(ctx context.Context, d descriptor, mounts [][]byte) (descriptor, error) {
	var req msg
	req.raw(1, d.encode())
	for _, m := range mounts {
		req.raw(2, m)
	}
	b, err := c.conn.unary(ctx, svcDiff+"Apply", req)
	if err != nil {
		return descriptor{}, err
	}
	data, err := only(b, 1)
	if err != nil {
		return descriptor{}, err
	}
	return decodeDescriptor(data)
}

// apiLeaseList returns the IDs of the leases and their labels
// (leases.v1.ListResponse: repeated Lease leases = 1; Lease: id = 1,
// labels = 3).
func (c *Client) apiLeaseList(ctx context.Context) (map[string]map[string]string, error) {
	b, err := c.conn.unary(ctx, svcLeases+"List", nil)
	if err != nil {
		return nil, err
	}
	out := map[string]map[string]string{}
	err = fields(b, func(num int, _ uint64, data []byte) error {
		if num != 1 {
			return nil
		}
		var id string
		labels := map[string]string{}
		err := fields(data, func(n int, _ uint64, d []byte) error {
			switch n {
			case 1:
				id = string(d)
			case 3:
				return mapEntry(d, labels)
			}
			return nil
		})
		out[id] = labels
		return err
	})
	return out, err
}
