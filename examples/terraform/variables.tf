# `layerforge catalogue` writes layers.auto.tfvars.json, which Terraform reads by itself from the working
# folder (copy it here, or point -var-file at it). One entry per cell: <layer>-<runtime>-<arch>.
variable "layerforge_layers" {
  description = "Per cell: the zip in S3 (bucket per region, content-addressed key), its base64 SHA-256, runtimes, architectures, and the layer version ARN per region where layerforge published one."
  type = map(object({
    layer_name               = string
    s3_bucket                = string      # may hold "{region}"
    s3_buckets               = map(string) # region => bucket the zip is in
    s3_key                   = string
    source_code_hash         = string # base64 SHA-256 of the zip, as filebase64sha256 gives
    compatible_runtimes      = list(string)
    compatible_architectures = list(string)
    layer_version_arns       = map(string) # region => ARN; empty after `publish --upload-only`
  }))
}
