go test fuzz v1
string("1.2.3-a..b")
