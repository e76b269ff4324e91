#!/usr/bin/env node
// Validates an SBOM file with third-party libraries, for the sbom package's tests:
//
//   node validate.cjs cyclonedx FILE   CycloneDX's own JSON schema validator
//                                      (@cyclonedx/cyclonedx-library, strict: no unknown
//                                      properties), for the specVersion the file states; then
//   node validate.cjs spdx FILE        (both) every purl parsed by packageurl-js, the reference
//                                      purl library, and found to name the component's name and
//                                      version; every license expression parsed by
//                                      spdx-expression-parse against the SPDX license list.
//                                      SPDX: every LicenseRef- used is declared.
//
// The libraries are installed by `make deps-test` into INGOT_NPM_DIR (by default
// ${XDG_CACHE_HOME:-~/.cache}/ingot/npm), never into the clone. Exit status: 0 valid,
// 1 invalid (each problem on stderr), 2 usage, 3 validators not installed.
'use strict'

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { createRequire } = require('node:module')

const [kind, file] = process.argv.slice(2)
if (!['cyclonedx', 'spdx'].includes(kind) || !file) {
  console.error('usage: validate.cjs cyclonedx|spdx FILE')
  process.exit(2)
}
const dir = process.env.INGOT_NPM_DIR ||
  path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'ingot', 'npm')
let CDX, PackageURL, parseSPDX
try {
  const req = createRequire(path.join(dir, 'package.json'))
  CDX = req('@cyclonedx/cyclonedx-library')
  PackageURL = req('packageurl-js').PackageURL
  parseSPDX = req('spdx-expression-parse')
  // The validator loads these lazily; requiring them here makes a missing one an install
  // problem (exit 3), not an invalid document.
  req('ajv'); req('ajv-formats'); req('ajv-formats-draft2019')
} catch (e) {
  console.error(`validate.cjs: the validators are not installed in ${dir}: run make deps-test (${e.message})`)
  process.exit(3)
}

const problems = []

// checkPurl parses purl and checks it names what the document says it names.
function checkPurl (where, purl, name, version) {
  let p
  try {
    p = PackageURL.fromString(purl)
  } catch (e) {
    problems.push(`${where}: purl ${purl}: ${e.message}`)
    return
  }
  if (p.name !== name) problems.push(`${where}: purl ${purl} names ${JSON.stringify(p.name)}, the component ${JSON.stringify(name)}`)
  if (p.version !== version) problems.push(`${where}: purl ${purl} has version ${JSON.stringify(p.version)}, the component ${JSON.stringify(version)}`)
}

// checkExpression parses an SPDX license expression; it returns the LicenseRef- ids in it.
function checkExpression (where, expr) {
  let tree
  try {
    tree = parseSPDX(expr)
  } catch (e) {
    problems.push(`${where}: license expression ${JSON.stringify(expr)}: ${e.message}`)
    return []
  }
  const refs = []
  const walk = (n) => {
    if (n.license) {
      if (n.license.startsWith('LicenseRef-')) refs.push(n.license)
    } else {
      walk(n.left); walk(n.right)
    }
  }
  walk(tree)
  return refs
}

async function cyclonedx (text) {
  const bom = JSON.parse(text)
  const validator = new CDX.Validation.JsonStrictValidator(bom.specVersion)
  const err = await validator.validate(text)
  if (err !== null) problems.push(`CycloneDX ${bom.specVersion} schema: ${JSON.stringify(err, null, 1)}`)
  const walk = (c, where) => {
    if (c.purl !== undefined) checkPurl(where, c.purl, c.name, c.version)
    for (const l of c.licenses || []) {
      if (l.expression !== undefined) checkExpression(where, l.expression)
    }
    for (const a of (c.pedigree && c.pedigree.ancestors) || []) walk(a, `${where} ancestor ${a.name}`)
    for (const s of c.components || []) walk(s, `${where}/${s.name}`)
  }
  if (bom.metadata && bom.metadata.component) walk(bom.metadata.component, 'metadata.component')
  for (const c of bom.components || []) walk(c, `component ${c.name}`)
}

function spdx (text) {
  const doc = JSON.parse(text)
  const declared = new Set((doc.hasExtractedLicensingInfos || []).map((l) => l.licenseId))
  const license = (where, expr) => {
    if (expr === undefined || expr === 'NOASSERTION' || expr === 'NONE') return
    for (const ref of checkExpression(where, expr)) {
      if (!declared.has(ref)) problems.push(`${where}: ${ref} is not declared in hasExtractedLicensingInfos`)
    }
  }
  for (const p of doc.packages || []) {
    const where = `package ${p.SPDXID}`
    for (const r of p.externalRefs || []) {
      if (r.referenceType === 'purl') checkPurl(where, r.referenceLocator, p.name, p.versionInfo)
    }
    license(where, p.licenseDeclared)
    license(where, p.licenseConcluded)
  }
  for (const f of doc.files || []) license(`file ${f.SPDXID}`, f.licenseConcluded)
}

async function main () {
  const text = fs.readFileSync(file, 'utf8')
  if (kind === 'cyclonedx') await cyclonedx(text)
  else spdx(text)
  if (problems.length > 0) {
    for (const p of problems) console.error(p)
    process.exit(1)
  }
  console.log(`valid ${kind}: ${file}`)
}

main().catch((e) => {
  console.error(`validate.cjs: ${e.stack || e}`)
  process.exit(e instanceof CDX.Validation.MissingOptionalDependencyError ? 3 : 1)
})
