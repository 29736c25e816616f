// Package portierv1 holds the Go code generated from proto/portier/v1. Do not
// edit the .pb.go files; run `go generate ./wire/portierv1` (needs protoc from
// Debian's protobuf-compiler; the protoc-gen-go version is pinned below).
package portierv1

//go:generate bash ../../scripts/genproto.sh
