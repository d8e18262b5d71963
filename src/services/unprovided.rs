//! Services this server does not provide. OMERO never fails a service getter, and tools such
//! as BlitzGateway and omero.testlib.ITest take every proxy they might need up front; so the
//! getters hand out a proxy, and only an operation on it fails, with an ApiUsageException
//! naming the service and the operation.

use std::sync::Arc;

use crate::facade::{async_trait, Current, Dispatch, DispatchError};
use crate::generated::omero::api;
use crate::generated::omero::grid::SHARED_RESOURCES_TYPE_IDS;

use super::context::{Factory, Services};
use super::errors::not_provided;
use super::guard::caller;

/// How a getter's service is made: once per client, or anew on every call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Stateless,
    Stateful,
}

/// One service OMERO has and this server does not.
#[derive(Debug, Clone, Copy)]
pub struct Missing {
    /// OMERO's service name, e.g. `omero.api.IQuery` (the identity name's suffix).
    pub name: &'static str,
    pub kind: Kind,
    pub type_ids: &'static [&'static str],
    pub most_derived: &'static str,
}

const fn missing(
    name: &'static str,
    kind: Kind,
    type_ids: &'static [&'static str],
    most_derived: &'static str,
) -> Missing {
    Missing {
        name,
        kind,
        type_ids,
        most_derived,
    }
}

use Kind::{Stateful, Stateless};

/// Every service of OMERO's ServiceFactory that this server only pretends to hand out.
pub const MISSING: &[Missing] = &[
    missing(
        "omero.api.IContainer",
        Stateless,
        api::I_CONTAINER_TYPE_IDS,
        "::omero::api::IContainer",
    ),
    missing(
        "omero.api.ILdap",
        Stateless,
        api::I_LDAP_TYPE_IDS,
        "::omero::api::ILdap",
    ),
    missing(
        "omero.api.IMetadata",
        Stateless,
        api::I_METADATA_TYPE_IDS,
        "::omero::api::IMetadata",
    ),
    missing(
        "omero.api.IPixels",
        Stateless,
        api::I_PIXELS_TYPE_IDS,
        "::omero::api::IPixels",
    ),
    missing(
        "omero.api.IProjection",
        Stateless,
        api::I_PROJECTION_TYPE_IDS,
        "::omero::api::IProjection",
    ),
    missing(
        "omero.api.IQuery",
        Stateless,
        api::I_QUERY_TYPE_IDS,
        "::omero::api::IQuery",
    ),
    missing(
        "omero.api.IRenderingSettings",
        Stateless,
        api::I_RENDERING_SETTINGS_TYPE_IDS,
        "::omero::api::IRenderingSettings",
    ),
    missing(
        "omero.api.IRepositoryInfo",
        Stateless,
        api::I_REPOSITORY_INFO_TYPE_IDS,
        "::omero::api::IRepositoryInfo",
    ),
    missing(
        "omero.api.IRoi",
        Stateless,
        api::I_ROI_TYPE_IDS,
        "::omero::api::IRoi",
    ),
    missing(
        "omero.api.IScript",
        Stateless,
        api::I_SCRIPT_TYPE_IDS,
        "::omero::api::IScript",
    ),
    missing(
        "omero.api.IShare",
        Stateless,
        api::I_SHARE_TYPE_IDS,
        "::omero::api::IShare",
    ),
    missing(
        "omero.api.ITimeline",
        Stateless,
        api::I_TIMELINE_TYPE_IDS,
        "::omero::api::ITimeline",
    ),
    missing(
        "omero.api.ITypes",
        Stateless,
        api::I_TYPES_TYPE_IDS,
        "::omero::api::ITypes",
    ),
    missing(
        "omero.api.IUpdate",
        Stateless,
        api::I_UPDATE_TYPE_IDS,
        "::omero::api::IUpdate",
    ),
    missing(
        "omero.grid.SharedResources",
        Stateless,
        SHARED_RESOURCES_TYPE_IDS,
        "::omero::grid::SharedResources",
    ),
    missing(
        "omero.api.Exporter",
        Stateful,
        api::EXPORTER_TYPE_IDS,
        "::omero::api::Exporter",
    ),
    missing(
        "omero.api.JobHandle",
        Stateful,
        api::JOB_HANDLE_TYPE_IDS,
        "::omero::api::JobHandle",
    ),
    missing(
        "omero.api.RawFileStore",
        Stateful,
        api::RAW_FILE_STORE_TYPE_IDS,
        "::omero::api::RawFileStore",
    ),
    missing(
        "omero.api.RawPixelsStore",
        Stateful,
        api::RAW_PIXELS_STORE_TYPE_IDS,
        "::omero::api::RawPixelsStore",
    ),
    missing(
        "omero.api.RenderingEngine",
        Stateful,
        api::RENDERING_ENGINE_TYPE_IDS,
        "::omero::api::RenderingEngine",
    ),
    missing(
        "omero.api.Search",
        Stateful,
        api::SEARCH_TYPE_IDS,
        "::omero::api::Search",
    ),
    missing(
        "omero.api.ThumbnailStore",
        Stateful,
        api::THUMBNAIL_STORE_TYPE_IDS,
        "::omero::api::ThumbnailStore",
    ),
];

/// The missing service OMERO knows under `name` (as getByName/createByName take it).
pub fn find(name: &str) -> Option<&'static Missing> {
    MISSING.iter().find(|m| m.name == name)
}

/// The servant behind a missing service's proxy: every operation is refused, after the
/// caller's session is checked as for any call (so expiry still surfaces as such).
pub struct UnprovidedService {
    missing: &'static Missing,
    services: Services,
    factory: Arc<Factory>,
}

impl UnprovidedService {
    pub fn new(missing: &'static Missing, services: Services, factory: Arc<Factory>) -> Self {
        UnprovidedService {
            missing,
            services,
            factory,
        }
    }
}

#[async_trait]
impl Dispatch for UnprovidedService {
    fn type_ids(&self) -> &'static [&'static str] {
        self.missing.type_ids
    }

    fn most_derived_type_id(&self) -> &'static str {
        self.missing.most_derived
    }

    async fn dispatch(&self, current: &Current, _params: &[u8]) -> Result<Vec<u8>, DispatchError> {
        caller(&self.services, &self.factory)?;
        let short = self
            .missing
            .name
            .rsplit('.')
            .next()
            .unwrap_or(self.missing.name);
        Err(not_provided(&format!("{short}.{}", current.operation)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_missing_service_names_its_most_derived_type() {
        for m in MISSING {
            assert!(m.type_ids.contains(&m.most_derived), "{}", m.name);
            assert!(m.type_ids.contains(&"::Ice::Object"), "{}", m.name);
            let short = m.name.rsplit('.').next().unwrap();
            assert!(
                m.most_derived.ends_with(&format!("::{short}")),
                "{}",
                m.name
            );
        }
    }

    #[test]
    fn lookup_is_by_omero_service_name() {
        assert_eq!(
            find("omero.api.IQuery").map(|m| m.kind),
            Some(Kind::Stateless)
        );
        assert_eq!(
            find("omero.api.RawFileStore").map(|m| m.kind),
            Some(Kind::Stateful)
        );
        assert!(find("omero.api.IAdmin").is_none());
        assert!(find("IQuery").is_none());
    }
}
