#!/usr/bin/env python3
"""Write a small MaxMind-format (GeoIP2-City layout) database for the tests with
mmdb-writer (PyPI): each argument NETWORK=COUNTRY,CONTINENT,LATITUDE,LONGITUDE.

  make_geo.py OUT.mmdb 10.77.1.0/24=US,NA,40.71,-74.01 10.77.2.0/24=NG,AF,6.52,3.38
"""
import sys

from mmdb_writer import MMDBWriter, MmdbF64
from netaddr import IPSet


def main():
    out, entries = sys.argv[1], sys.argv[2:]
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoIP2-City",
                        languages=["en"], description="mailstore test geo database")
    for entry in entries:
        network, fields = entry.split("=", 1)
        country, continent, lat, lon = fields.split(",")
        writer.insert_network(IPSet([network]), {
            "country": {"iso_code": country},
            "continent": {"code": continent},
            "location": {"latitude": MmdbF64(float(lat)), "longitude": MmdbF64(float(lon))},
        })
    writer.to_db_file(out)


if __name__ == "__main__":
    main()
