module example.com/standalone

go 1.26

require github.com/citadel-go/citadel v0.0.0

replace github.com/citadel-go/citadel => ../..
