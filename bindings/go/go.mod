module github.com/brokk/brokk/bindings/go

go 1.24
