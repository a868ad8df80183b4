module github.com/brokk/brokk/examples/go

go 1.24

require github.com/brokk/brokk/bindings/go v0.0.0

// The binding in this checkout; nothing is fetched.
replace github.com/brokk/brokk/bindings/go => ../../bindings/go
