module github.com/meshring/meshring/go

go 1.22
