# The troubleshooting guide's scikit-learn layer and inference function, deployed by Terraform from what
# layerforge built and catalogued:
#
#   layerforge build --project --out dist
#   layerforge publish --project dist --upload-only      # or without --upload-only: layerforge publishes
#   layerforge catalogue dist --out examples/terraform   # writes layers.auto.tfvars.json here
#   terraform -chdir=examples/terraform apply -var role_arn=... -var function_zip=../../dist/function.zip
#
# With use_published_arn = false (the default) Terraform owns the layer version: it publishes it from the
# object layerforge uploaded, and source_code_hash makes it replace the version exactly when the zip's
# content changes. With true, the function uses the version layerforge published in this region.
terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}

provider "aws" {
  region = var.region
}

variable "region" {
  type    = string
  default = "us-east-1"
}

variable "cell" {
  description = "The catalogue's cell the function uses."
  type        = string
  default     = "sklearn-python3.11-x86_64"
}

variable "use_published_arn" {
  type    = bool
  default = false
}

variable "role_arn" {
  description = "The function's execution role."
  type        = string
}

variable "function_zip" {
  description = "The function package (layerforge package-function)."
  type        = string
}

locals {
  layer  = var.layerforge_layers[var.cell]
  bucket = lookup(local.layer.s3_buckets, var.region, replace(local.layer.s3_bucket, "{region}", var.region))
}

resource "aws_lambda_layer_version" "stack" {
  count                    = var.use_published_arn ? 0 : 1
  layer_name               = local.layer.layer_name
  s3_bucket                = local.bucket
  s3_key                   = local.layer.s3_key
  source_code_hash         = local.layer.source_code_hash
  compatible_runtimes      = local.layer.compatible_runtimes
  compatible_architectures = local.layer.compatible_architectures
}

locals {
  layer_arn = var.use_published_arn ? local.layer.layer_version_arns[var.region] : aws_lambda_layer_version.stack[0].arn
}

resource "aws_lambda_function" "inference" {
  function_name    = "sklearn-inference"
  role             = var.role_arn
  runtime          = local.layer.compatible_runtimes[0]
  architectures    = local.layer.compatible_architectures
  handler          = "handler.lambda_handler"
  filename         = var.function_zip
  source_code_hash = filebase64sha256(var.function_zip)
  layers           = [local.layer_arn]
  memory_size      = 1024 # the data stack's import needs more than the 128 MB default
  timeout          = 30
}

output "layer_version_arn" {
  value = local.layer_arn
}
