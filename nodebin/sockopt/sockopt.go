// Package sockopt sets the TCP options that the peer connections of the
// node and of the bastion's seeder share.
package sockopt
