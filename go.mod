module github.com/palleto/palleto

go 1.26.8

require github.com/klauspost/compress v1.20.4
