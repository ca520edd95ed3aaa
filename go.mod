module confguest

go 1.26.8
