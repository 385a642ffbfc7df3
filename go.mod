module github.com/smartscheduler/session

go 1.26
