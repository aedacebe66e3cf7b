module github.com/meshring/meshring/bench/go-udp

go 1.22
