//go:build !unix

package openssh

// lockDir is a no-op where flock does not exist; appends within one
// process are still serialized by a mutex.
func lockDir(string) (func(), error) { return func() {}, nil }
