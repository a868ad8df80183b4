// The Go binding's 1->1 benchmark. The binding comes from this checkout, not from a proxy.
module brokk.dev/brokk/bench

go 1.24

require brokk.dev/brokk v0.0.0

replace brokk.dev/brokk => ../../bindings/go
