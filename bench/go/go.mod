// The Go binding's 1->1 benchmark. The binding comes from this checkout, not from a proxy.
module github.com/brokk/brokk/bench/go

go 1.24

require github.com/brokk/brokk/bindings/go v0.0.0

replace github.com/brokk/brokk/bindings/go => ../../bindings/go
