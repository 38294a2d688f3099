// Package seed is the bastion's BitTorrent side: it builds one torrent per
// layer file and serves the job's layers to the fleet so that each piece
// leaves the bastion about once and the hosts pass it on among themselves.
//
// The seeder speaks the peer wire protocol (BEP 3, with the fast extension
// of BEP 6) itself rather than through a BitTorrent library, because what
// it must control is per connection and per request: which never-sent piece
// goes to which host, which requests wait for another host, and which to
// refuse because a host already has the piece to pass on. No maintained Go library exposes that (anacrolix
// serves every request for a piece it has and advertises the same pieces to
// every peer; it has no super-seeding). The files split it by idea:
//
//   - wire.go: the messages, read and written;
//   - requests.go: what a request may ask for, and a connection's queue;
//   - policy.go: which requests are served (the super-seeding policy);
//   - conn.go: one connection, its reader and writer (sendfile);
//   - seeder.go: listening, admission, routing by info hash, rate limit;
//   - layer.go and torrent.go: the layers' metainfo, made and checked.
package seed
