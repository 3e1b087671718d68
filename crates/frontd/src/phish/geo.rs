//! Where a client address is: its country, continent and (with a city database) location,
//! from a MaxMind-format database (GeoLite2, DB-IP) read with the `maxminddb` crate. A
//! lookup never fails the login it serves: an address the database does not know, or a
//! database that cannot be read, is "unknown", and unknown is never "away from home".

use std::net::IpAddr;
use std::path::Path;

use maxminddb::{path, Reader};

/// What the database says about an address.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Place {
    pub country: Option<String>,
    pub continent: Option<String>,
    /// Degrees.
    pub location: Option<(f64, f64)>,
}

/// A loaded database.
pub struct Geo {
    reader: Reader<Vec<u8>>,
}

impl std::fmt::Debug for Geo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Geo").field("database", &self.reader.metadata().database_type).finish()
    }
}

impl Geo {
    pub fn open(path: &Path) -> Result<Self, String> {
        Reader::open_readfile(path).map(|reader| Self { reader }).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The place of `ip` (all unknown when the database does not know it).
    pub fn locate(&self, ip: IpAddr) -> Place {
        let Ok(found) = self.reader.lookup(ip) else { return Place::default() };
        let text = |p: &[maxminddb::PathElement<'_>]| {
            found.decode_path::<String>(p).ok().flatten().map(|s| s.chars().take(8).collect::<String>())
        };
        let number = |p: &[maxminddb::PathElement<'_>]| found.decode_path::<f64>(p).ok().flatten();
        let location = match (number(&path!["location", "latitude"]), number(&path!["location", "longitude"])) {
            (Some(lat), Some(lon)) if (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon) => {
                Some((lat, lon))
            }
            _ => None,
        };
        Place {
            country: text(&path!["country", "iso_code"]).map(|c| c.to_ascii_uppercase()),
            continent: text(&path!["continent", "code"]).map(|c| c.to_ascii_uppercase()),
            location,
        }
    }
}
