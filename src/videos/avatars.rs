//! Custom avatars (SPEC §3b), the one owner of the `custom_avatars` rows: a tenant's own
//! presenter is a built-in base with its own skin tone, hair (style and colour), eye colour and
//! outfit colour. [`parse_new`] checks a create body field by field; [`create`], [`list`],
//! [`find`] and [`remove`] act for one tenant only (another tenant's avatar does not exist for
//! it); [`resolve`] copies a custom avatar's look into each video request that names it, so a
//! render needs no database and deleting the avatar later changes no video already asked for.

use entity::custom_avatar;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::platform::db::{Db, StoreError, now};
use crate::platform::error::FieldError;
use crate::render::assets::Catalog;
use crate::render::params::{AvatarLook, AvatarParams, HAIR_STYLES, VideoParams};

pub const NAME_MAX_CHARS: usize = 100;

/// A custom avatar as the API shows it (also in `GET /api/v1/avatars`).
pub fn view(m: &custom_avatar::Model) -> Value {
    let look: Option<AvatarLook> = serde_json::from_value(m.look.clone()).ok();
    let mut v = json!({
        "id": m.id,
        "name": m.name,
        "custom": true,
        "expressions": ["neutral", "friendly", "serious"],
        "created_at": m.created_at,
    });
    if let Some(l) = look {
        v["base"] = json!(l.base);
        v["skin_tone"] = json!(l.skin_tone);
        v["hair"] = json!({"style": l.hair_style, "color": l.hair_color});
        v["eye_color"] = json!(l.eye_color);
        v["outfit_color"] = json!(l.outfit_color);
    }
    v
}

fn is_hex(s: &str) -> bool {
    s.len() == 7 && s.starts_with('#') && s[1..].chars().all(|c| c.is_ascii_hexdigit())
}

/// The name and look of a create body, or every invalid field. Colours and the hair style
/// not given are the base's (`base` defaults to the first built-in avatar).
pub fn parse_new(body: &Value, catalog: &Catalog) -> Result<(String, AvatarLook), Vec<FieldError>> {
    let mut errors = Vec::new();
    let Some(obj) = body.as_object() else {
        return Err(vec![FieldError::new(
            "body",
            "invalid_body",
            "must be a JSON object",
        )]);
    };
    for key in obj.keys() {
        if ![
            "name",
            "skin_tone",
            "hair",
            "eye_color",
            "outfit_color",
            "base",
        ]
        .contains(&key.as_str())
        {
            errors.push(FieldError::new(
                key.clone(),
                "unknown_field",
                "unknown field; allowed: name, skin_tone, hair, eye_color, outfit_color, base",
            ));
        }
    }
    let name = match obj.get("name").and_then(Value::as_str).map(str::trim) {
        Some(n)
            if (1..=NAME_MAX_CHARS).contains(&n.chars().count())
                && !n.chars().any(char::is_control) =>
        {
            n.to_string()
        }
        _ => {
            errors.push(FieldError::new(
                "name",
                "invalid_avatar",
                format!("is required: 1 to {NAME_MAX_CHARS} characters, no control characters"),
            ));
            String::new()
        }
    };
    let base = match obj.get("base") {
        None => catalog.avatars.first(),
        Some(v) => {
            let found = v.as_str().and_then(|id| catalog.avatar(id));
            if found.is_none() {
                errors.push(FieldError::new(
                    "base",
                    "invalid_avatar",
                    "must be a built-in avatar id from GET /api/v1/avatars",
                ));
            }
            found
        }
    };
    let base_field = |k: &str| {
        base.and_then(|b| b.extra.get(k))
            .and_then(Value::as_str)
            .unwrap_or("#888888")
            .to_string()
    };
    let colour =
        |errors: &mut Vec<FieldError>, field: &str, v: Option<&Value>, default: String| match v {
            None => default,
            Some(Value::String(s)) if is_hex(s) => s.to_ascii_lowercase(),
            Some(_) => {
                errors.push(FieldError::new(
                    field,
                    "invalid_avatar",
                    "must be a color #rrggbb",
                ));
                default
            }
        };
    let skin_tone = colour(
        &mut errors,
        "skin_tone",
        obj.get("skin_tone"),
        base_field("skin"),
    );
    let eye_color = colour(
        &mut errors,
        "eye_color",
        obj.get("eye_color"),
        base_field("iris"),
    );
    let outfit_color = colour(
        &mut errors,
        "outfit_color",
        obj.get("outfit_color"),
        base_field("clothing"),
    );
    let (mut hair_style, mut hair_color) = (base_field("hair_style"), base_field("hair"));
    match obj.get("hair") {
        None => {}
        Some(Value::Object(h)) => {
            for key in h
                .keys()
                .filter(|k| !["style", "color"].contains(&k.as_str()))
            {
                errors.push(FieldError::new(
                    format!("hair.{key}"),
                    "unknown_field",
                    "unknown field; allowed: style, color",
                ));
            }
            match h.get("style") {
                None => {}
                Some(Value::String(s)) if HAIR_STYLES.contains(&s.as_str()) => {
                    hair_style = s.clone()
                }
                Some(_) => errors.push(FieldError::new(
                    "hair.style",
                    "invalid_avatar",
                    format!("must be one of {}", HAIR_STYLES.join(", ")),
                )),
            }
            hair_color = colour(&mut errors, "hair.color", h.get("color"), hair_color);
        }
        Some(_) => errors.push(FieldError::new(
            "hair",
            "invalid_avatar",
            "must be an object {\"style\", \"color\"}",
        )),
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let look = AvatarLook {
        base: base.map(|b| b.id.clone()).unwrap_or_default(),
        skin_tone,
        hair_style,
        hair_color,
        eye_color,
        outfit_color,
    };
    Ok((name, look))
}

pub async fn create(
    db: &Db,
    tenant: &str,
    name: String,
    look: &AvatarLook,
) -> Result<custom_avatar::Model, StoreError> {
    let row = custom_avatar::Model {
        id: Uuid::now_v7(),
        tenant: tenant.to_string(),
        name,
        look: serde_json::to_value(look).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        created_at: now(),
    };
    custom_avatar::ActiveModel::from(row.clone())
        .insert(db)
        .await?;
    Ok(row)
}

/// The tenant's custom avatars, oldest first.
pub async fn list(db: &Db, tenant: &str) -> Result<Vec<custom_avatar::Model>, StoreError> {
    Ok(custom_avatar::Entity::find()
        .filter(custom_avatar::Column::Tenant.eq(tenant))
        .order_by_asc(custom_avatar::Column::CreatedAt)
        .all(db)
        .await?)
}

pub async fn find(
    db: &Db,
    tenant: &str,
    id: Uuid,
) -> Result<Option<custom_avatar::Model>, StoreError> {
    Ok(custom_avatar::Entity::find_by_id(id)
        .filter(custom_avatar::Column::Tenant.eq(tenant))
        .one(db)
        .await?)
}

/// `false` when the tenant has no such avatar.
pub async fn remove(db: &Db, tenant: &str, id: Uuid) -> Result<bool, StoreError> {
    let res = custom_avatar::Entity::delete_many()
        .filter(custom_avatar::Column::Id.eq(id))
        .filter(custom_avatar::Column::Tenant.eq(tenant))
        .exec(db)
        .await?;
    Ok(res.rows_affected > 0)
}

/// The look of a custom avatar of `tenant` named by `avatar` (a built-in one has none).
async fn look_of(
    db: &Db,
    tenant: &str,
    catalog: &Catalog,
    avatar: &AvatarParams,
) -> Result<Option<Option<AvatarLook>>, StoreError> {
    if catalog.avatar(&avatar.id).is_some() {
        return Ok(Some(None));
    }
    let Ok(id) = Uuid::parse_str(&avatar.id) else {
        return Ok(None);
    };
    Ok(find(db, tenant, id)
        .await?
        .and_then(|m| serde_json::from_value(m.look).ok())
        .map(Some))
}

/// Copies each named custom avatar's look into the requests (the video's and every scene's),
/// or names the field of one that is not an avatar of `tenant` (`{prefix}avatar.id`,
/// `{prefix}scenes[i].avatar.id`).
pub async fn resolve(
    db: &Db,
    tenant: &str,
    catalog: &Catalog,
    params: &mut [(String, VideoParams)],
) -> Result<Result<(), Vec<FieldError>>, StoreError> {
    let mut errors = Vec::new();
    let unknown = |field: String| {
        FieldError::new(
            field,
            "invalid_avatar",
            "must be an id from GET /api/v1/avatars",
        )
    };
    for (prefix, p) in params.iter_mut() {
        match look_of(db, tenant, catalog, &p.avatar).await? {
            Some(look) => p.avatar.look = look,
            None => errors.push(unknown(format!("{prefix}avatar.id"))),
        }
        for (i, scene) in p.scenes.iter_mut().flatten().enumerate() {
            match look_of(db, tenant, catalog, &scene.avatar).await? {
                Some(look) => scene.avatar.look = look,
                None => errors.push(unknown(format!("{prefix}scenes[{i}].avatar.id"))),
            }
        }
    }
    Ok(if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    })
}

/// Built-in avatars as listed (`"custom": false` added).
pub fn builtin_views(catalog: &Catalog) -> Vec<Value> {
    catalog
        .avatars
        .iter()
        .map(|a| {
            let mut v = serde_json::to_value(a).unwrap_or_else(|_| Value::Object(Map::new()));
            v["custom"] = json!(false);
            v
        })
        .collect()
}
