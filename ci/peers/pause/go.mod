module topolvm-py/pause

go 1.22
