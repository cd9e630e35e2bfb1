module herald/proxybackend

go 1.22
