module topolvm-py/loadgen

go 1.22
