// Package monitoring tests check_kcare against a live eportal with the
// real monitoring systems: Debian's Nagios 4 running the shipped command
// definition, and the Zabbix agent with the shipped UserParameter.
package monitoring
